#!/usr/bin/python3
"""Token-flood benchmark: N distinct garbage tokens (well-formed, unknown to the IdP, so each one
costs an introspection and leaves a negative cache entry) at full speed through the shipped
haproxy.cfg + agent, while a second client keeps sending one cached token.

Prints: flood requests and rate, IdP calls and calls/s, the IdP's peak concurrency against the
agent's --max-concurrent-introspections, the agent's RSS (start, peak, and over time) against the
configured cache budget, the cache's own byte count, entries and evictions, and the cached
client's p50/p99 alone and under the flood (wrk --latency). Then an extrapolation to 1 M tokens
from the measured rate (the memory figure is a plateau, not a projection: the budget bounds it).

Usage: contrib/bench/bench-flood.py [--tokens 200000] [--duration 45] [--cache-max-bytes 8m] ...
       (see --help). Needs wrk and HAProxy; uses contrib/bench/idp_stub.py as the IdP (asyncio,
       so the IdP is not the bottleneck) and haproxy-backend.cfg as the API.
Environment: PTA_AGENT (default <repo>/build/phantom-token-agent), PTA_HAPROXY.
Standard library only. Everything runs on loopback and is stopped at the end.
"""

import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", ".."))


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--tokens", type=int, default=200000, help="distinct garbage tokens, at most")
    p.add_argument("--duration", type=int, default=45, help="flood seconds, at most")
    p.add_argument("--baseline", type=int, default=8, help="seconds of the cached client alone")
    p.add_argument("--threads", type=int, default=2, help="wrk threads of the flood")
    p.add_argument("--connections", type=int, default=64, help="wrk connections of the flood")
    p.add_argument("--cached-connections", type=int, default=2)
    p.add_argument("--cache-max-bytes", default="8m", help="the agent's cache budget")
    p.add_argument("--cache-max-entries", default="1000000")
    p.add_argument("--cache-negative-ttl", default="60s",
                   help="long, so that the budget (not the TTL) bounds the cache")
    p.add_argument("--max-concurrent", default="64", help="--max-concurrent-introspections")
    p.add_argument("--agent-arg", action="append", default=[],
                   help="extra agent option (repeatable), e.g. --agent-arg=--x=y")
    p.add_argument("--keep", action="store_true", help="keep the work directory (logs)")
    return p.parse_args()


def size_bytes(s):
    m = re.fullmatch(r"(\d+)([kmg]?)", s.strip().lower())
    if not m:
        raise SystemExit("bad size %r" % s)
    return int(m.group(1)) * {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}[m.group(2)]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(pred, timeout, what):
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise SystemExit("timed out waiting for " + what)
        time.sleep(0.05)


def port_open(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def http(url, doc=None, headers=None):
    data = None if doc is None else json.dumps(doc).encode()
    req = urllib.request.Request(url, data=data, headers=headers or {})
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def rss_kb(pid):
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def metric(text, name):
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    return 0.0


class Procs:
    """Children started by this script, each in its own session; stopped by their pid only."""

    def __init__(self, workdir):
        self.workdir = workdir
        self.procs = []

    def start(self, name, argv, env=None):
        log = open(os.path.join(self.workdir, name + ".log"), "wb")
        p = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                             env=env, start_new_session=True)
        self.procs.append((name, p, log))
        return p

    def log(self, name):
        with open(os.path.join(self.workdir, name + ".log"), errors="replace") as f:
            return f.read()

    def stop_all(self):
        for _, p, _ in reversed(self.procs):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for _, p, log in reversed(self.procs):
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(5)
            log.close()


def wrk_summary(text):
    """requests, seconds, p50 ms, p99 ms, non-2xx from wrk --latency output."""
    def ms(label):
        m = re.search(r"^\s*%s\s+([\d.]+)(us|ms|s)\s*$" % re.escape(label), text, re.M)
        if not m:
            return None
        return float(m.group(1)) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[m.group(2)]
    m = re.search(r"(\d+) requests in ([\d.]+)(ms|s|m)", text)
    n = int(m.group(1)) if m else 0
    secs = float(m.group(2)) * {"ms": 0.001, "s": 1.0, "m": 60.0}[m.group(3)] if m else 0.0
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    errs = re.search(r"Socket errors: (.*)", text)
    return {"requests": n, "seconds": secs, "p50": ms("50%"), "p99": ms("99%"),
            "non2xx": int(bad.group(1)) if bad else 0, "socket_errors": errs.group(1) if errs else ""}


def fmt_ms(v):
    return "?" if v is None else "%.3f" % v


def main():
    args = parse_args()
    agent = os.environ.get("PTA_AGENT") or os.path.join(REPO, "build", "phantom-token-agent")
    haproxy = os.environ.get("PTA_HAPROXY") or shutil.which("haproxy") or "/usr/sbin/haproxy"
    for path in (agent, haproxy):
        if not os.access(path, os.X_OK):
            raise SystemExit("not executable: %s (set PTA_AGENT / PTA_HAPROXY)" % path)
    if not shutil.which("wrk"):
        raise SystemExit("wrk is needed (contrib/install-deps.sh bench)")
    budget = size_bytes(args.cache_max_bytes)
    work = tempfile.mkdtemp(prefix="pta-flood-")
    procs = Procs(work)
    try:
        run(args, agent, haproxy, budget, procs, work)
    finally:
        procs.stop_all()
        if args.keep:
            sys.stderr.write("logs kept in %s\n" % work)
        else:
            shutil.rmtree(work, ignore_errors=True)


def run(args, agent, haproxy, budget, procs, work):
    backend_port, agent_port, proxy_port, metrics_port = (free_port() for _ in range(4))
    env = dict(os.environ, BENCH_BACKEND_BIND="127.0.0.1:%d" % backend_port)
    procs.start("backend", [haproxy, "-db", "-f", os.path.join(HERE, "haproxy-backend.cfg")], env)
    stub = procs.start("stub", [sys.executable, os.path.join(HERE, "idp_stub.py"), "--port", "0"])
    wait_until(lambda: stub.poll() is None and "READY " in procs.log("stub"), 15, "the IdP stub")
    stub_port = int(re.search(r"READY (\d+)", procs.log("stub")).group(1))
    stub_url = "http://127.0.0.1:%d" % stub_port
    a = procs.start("agent", [agent, "--listen", "127.0.0.1:%d" % agent_port, "--log-level", "warn",
                              "--client-auth", "none", "--introspection-url",
                              stub_url + "/introspect", "--metrics-listen",
                              "127.0.0.1:%d" % metrics_port, "--cache-max-bytes",
                              args.cache_max_bytes, "--cache-max-entries", args.cache_max_entries,
                              "--cache-negative-ttl", args.cache_negative_ttl,
                              "--max-concurrent-introspections", args.max_concurrent]
                    + args.agent_arg)
    wait_until(lambda: a.poll() is None and port_open(agent_port), 15, "the agent")
    env = dict(os.environ, PHANTOM_BIND="127.0.0.1:%d" % proxy_port,
               PHANTOM_BACKEND="127.0.0.1:%d" % backend_port,
               PHANTOM_AGENT="127.0.0.1:%d" % agent_port,
               PHANTOM_SPOE_CONF=os.path.join(REPO, "spoe", "phantom-token.conf"))
    procs.start("haproxy", [haproxy, "-db", "-f", os.path.join(REPO, "haproxy-conf", "haproxy.cfg")],
                env)
    wait_until(lambda: port_open(proxy_port), 15, "haproxy")
    url = "http://127.0.0.1:%d/api/flood" % proxy_port

    cached = "flood-cached-token-%d" % os.getpid()
    http(stub_url + "/_control/tokens", {"token": cached})
    wait_until(lambda: http(url, headers={"Authorization": "Bearer " + cached})[0] == 200, 20,
               "the cached token to be answered 200")
    metrics_url = "http://127.0.0.1:%d/metrics" % metrics_port
    rss_start = rss_kb(a.pid)

    def wrk(script, conns, threads, secs, extra_env=None):
        e = dict(os.environ, BENCH_TOKEN=cached, **(extra_env or {}))
        return subprocess.Popen(["wrk", "-t%d" % threads, "-c%d" % conns, "-d%ds" % secs,
                                 "--latency", "-s", os.path.join(HERE, script), url],
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=e, text=True)

    base = wrk_summary(wrk("token-one.lua", args.cached_connections, 1, args.baseline)
                       .communicate()[0])

    calls0 = json.loads(http(stub_url + "/_control/stats")[1])["calls"]
    http(stub_url + "/_control/reset")  # max_in_flight from now on (tokens: only `cached`)
    samples = []  # (t, rss kB, cache bytes, entries, IdP calls)
    per_thread = max(1, args.tokens // args.threads)
    t0 = time.monotonic()
    # Both wrk runs get more time than needed; they are stopped (SIGINT: wrk then prints its
    # summary with the real elapsed time) once the agent has seen every flood token (its cache
    # misses: the cached client only hits), since a wrk thread that stops early still leaves wrk
    # waiting for -d.
    miss = 'phantom_cache_lookups_total{result="miss"}'
    misses0 = metric(http(metrics_url)[1].decode(), miss)
    flood = wrk("token-flood.lua", args.connections, args.threads, args.duration + 30,
                {"BENCH_PREFIX": "flood-%d-%d-" % (os.getpid(), int(time.time())),
                 "BENCH_FLOOD_PER_THREAD": str(per_thread)})
    cached_wrk = wrk("token-one.lua", args.cached_connections, 1, args.duration + 30)
    while time.monotonic() - t0 < args.duration and flood.poll() is None:
        time.sleep(0.25)
        try:
            text = http(metrics_url)[1].decode()
            calls = json.loads(http(stub_url + "/_control/stats")[1])["calls"]
        except OSError:
            text, calls = "", 0
        samples.append((time.monotonic() - t0, rss_kb(a.pid), metric(text, "phantom_cache_bytes"),
                        metric(text, "phantom_cache_entries"), calls))
        if metric(text, miss) - misses0 >= args.tokens:
            break
    elapsed = time.monotonic() - t0
    for w in (flood, cached_wrk):
        w.send_signal(signal.SIGINT)
    flood_out = flood.communicate()[0]
    cached_out = cached_wrk.communicate()[0]
    fl = wrk_summary(flood_out)
    under = wrk_summary(cached_out)
    st = json.loads(http(stub_url + "/_control/stats")[1])
    text = http(metrics_url)[1].decode()
    if a.poll() is not None:
        raise SystemExit("the agent died during the flood:\n" + procs.log("agent")[-3000:])

    rss_peak = max([s[1] for s in samples] + [rss_start])
    bytes_peak = max([s[2] for s in samples] + [0])
    entries_peak = max([s[3] for s in samples] + [0])
    secs = fl["seconds"] or elapsed
    rate = fl["requests"] / secs if secs else 0
    calls_rate = st["calls"] / secs if secs else 0
    rows = [
        ("flood tokens sent (distinct, unknown)", "%d in %.1f s (cap %d)" % (fl["requests"], secs,
                                                                            args.tokens)),
        ("flood rate", "%.0f req/s (%d wrk connections)" % (rate, args.connections)),
        ("agent answers 503 (rate limit) / rate-limited", "%d / %d" % (
            metric(text, 'phantom_decisions_total{status="503"}'),
            metric(text, "phantom_rate_limited_total"))),
        ("flood answers not 2xx (401 expected)", "%d; socket errors: %s" % (fl["non2xx"],
                                                                          fl["socket_errors"] or "none")),
        ("IdP calls / calls per s", "%d / %.0f" % (st["calls"], calls_rate)),
        ("IdP peak concurrency / agent limit", "%d / %s" % (st["max_in_flight"], args.max_concurrent)),
        ("agent RSS start / peak", "%.1f MB / %.1f MB" % (rss_start / 1024, rss_peak / 1024)),
        ("cache budget / cache bytes peak", "%.1f MB / %.1f MB" % (budget / 2**20, bytes_peak / 2**20)),
        ("cache entries peak / evictions", "%d / %d" % (entries_peak,
                                                         metric(text, "phantom_cache_evictions_total"))),
        ("RSS peak - start - budget (overhead)", "%.1f MB" % ((rss_peak - rss_start) / 1024
                                                               - budget / 2**20)),
        ("cached client alone: req, p50, p99", "%d, %s ms, %s ms" % (
            base["requests"], fmt_ms(base["p50"]), fmt_ms(base["p99"]))),
        ("cached client under flood: req, p50, p99", "%d, %s ms, %s ms (not 2xx: %d)" % (
            under["requests"], fmt_ms(under["p50"]), fmt_ms(under["p99"]), under["non2xx"])),
    ]
    w = max(len(r[0]) for r in rows)
    print("\nToken flood (agent %s, cache budget %s, negative TTL %s, calls before the flood %d)"
          % (os.path.basename(agent), args.cache_max_bytes, args.cache_negative_ttl, calls0))
    for k, v in rows:
        print("  %-*s  %s" % (w, k, v))
    print("  RSS over time (s: MB):  " + "  ".join(
        "%.0f:%.1f" % (s[0], s[1] / 1024) for s in samples[::max(1, len(samples) // 10)]))
    if rate > 0:
        print("  Extrapolation: 1 M distinct tokens would take %.0f s at this rate; the cache stays "
              "within its %s budget (evicting), so the RSS plateau above is what 1 M would show "
              "too, unless the allocator fragments further (not measured)."
              % (1e6 / rate, args.cache_max_bytes))


if __name__ == "__main__":
    main()
