#!/usr/bin/python3
"""Fault injection through the real HAProxy + agent: bounded load runs while the identity server,
the agent, HAProxy or the SPOP connections are broken, and every case is counted.

For every case: requests sent, answers by status, requests the API received without a JWT this
test IdP issued (must be 0: the echo backend hashes every Authorization it receives, the IdP
hashes every JWT it issues), answers whose JWT belongs to another token (must be 0), IdP calls
(as the agent counted them, and as the IdP saw them), p50/p99 latency, the p99 of requests with an
already cached token, and the agent's peak RSS. A table is printed at the end.

Assertions are on correctness only: 0 unauthenticated forwards, 0 cross-wired answers, statuses
within the set each case allows, cached tokens answered 200 while only the IdP is broken,
recovery once the fault is gone, RSS under a bound. Never on timing: this box is shared.

Bounded: each case runs LOAD_SECONDS of load (at most MAX_REQUESTS requests) with WORKERS
keep-alive clients: 1 s healthy, FAULT_SECONDS broken, then healthy again.
"""

import base64
import collections
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

WORKERS = int(os.environ.get("PTA_FAULTS_WORKERS", "8"))
MAX_REQUESTS = int(os.environ.get("PTA_FAULTS_MAX_REQUESTS", "3000"))
PRE_SECONDS, FAULT_SECONDS, POST_SECONDS = 1.0, 3.0, 1.0
LOAD_SECONDS = PRE_SECONDS + FAULT_SECONDS + POST_SECONDS
CACHED_TOKENS = 16
CACHE_BUDGET_MB = 16
METRICS_PORT = harness.free_port()

# What a request may be answered with. "ERR": the connection failed without an HTTP answer.
OK = {200, 401}
IDP_FAILED = OK | {500, 502, 503}  # the agent's answers when the IdP misbehaves
AGENT_GONE = OK | {503}            # HAProxy fails closed when the agent is away


def b64url_json(part):
    return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))


def agent_is_sanitized():
    try:
        with open(harness.AGENT, "rb") as f:
            return b"__asan_init" in f.read()
    except OSError:
        return False


# The agent's RSS may grow by the cache budget plus this over its size after the warm-up.
# AddressSanitizer's quarantine and shadow memory need far more.
RSS_SLACK_MB = float(os.environ.get("PTA_FAULTS_RSS_SLACK_MB",
                                    "400" if agent_is_sanitized() else "48"))


def rss_kb(pid):
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def percentile(values, p):
    if not values:
        return 0.0
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * p))]


class Ledger:
    """What the IdP issued and how often it was called, across restarts of the IdP process."""

    def __init__(self, stack):
        self.stack = stack
        self.issued = set()
        self.calls_done = 0  # calls seen by IdP processes that are gone

    def snapshot(self):
        self.issued.update(self.stack._idp("GET", "/_control/issued")["sha256"])
        return self.issued

    def calls(self):
        return self.calls_done + self.stack.idp_calls()

    def before_stop(self):
        # Stop issuing first: a JWT issued between the snapshot and the stop would be unknown.
        self.stack.idp_mode(status=503)
        self.snapshot()
        self.calls_done += self.stack.idp_calls()


class Load:
    """WORKERS threads, each on its own keep-alive connection to HAProxy, sending requests in a
    fixed mix: 5/8 with a cached token, 2/8 with a token never seen before (registered at the
    IdP), 1/8 with an unknown token (a new one each time)."""

    def __init__(self, suite, name):
        self.suite = suite
        self.slug = "".join(c if c.isalnum() else "-" for c in name)
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.sent = 0
        self.results = []  # (kind, status, seconds, wrong_jwt)
        self.new_tokens = collections.deque(suite.fresh_tokens(MAX_REQUESTS // 4 + WORKERS))
        self.peak_rss_kb = 0

    def _pick(self, wid, i):
        slot = (wid + i) % 8
        if slot in (0, 4):
            try:
                return "new", self.new_tokens.popleft()
            except IndexError:
                pass
        if slot == 2:
            tok = "fault-unknown-%s-%d-%d-%s" % (self.slug, wid, i, os.urandom(4).hex())
            return "bad", tok
        return "cached", self.suite.cached[(wid + i) % len(self.suite.cached)]

    def _take_slot(self):
        with self.lock:
            if self.sent >= MAX_REQUESTS:
                return False
            self.sent += 1
            return True

    def _worker(self, wid):
        port = self.suite.stack.haproxy_port
        sock = f = None
        i = 0
        while not self.stop.is_set() and self._take_slot():
            kind, tok = self._pick(wid, i)
            i += 1
            req = ("GET /api/data HTTP/1.1\r\nHost: faults\r\nAuthorization: Bearer %s\r\n\r\n"
                   % tok).encode()
            t0 = time.perf_counter()
            r = None
            try:
                if sock is None:
                    sock = socket.create_connection(("127.0.0.1", port), timeout=15)
                    f = sock.makefile("rb")
                sock.sendall(req)
                r = harness.read_response(f)
                status = r.status
                if (r.header("Connection") or "").lower() == "close":
                    raise ConnectionError("closed by the server")
            except (OSError, ConnectionError, ValueError, IndexError):
                status = status if r is not None else "ERR"
                if sock is not None:
                    sock.close()
                sock = f = None
            elapsed = time.perf_counter() - t0
            wrong = r is not None and r.status == 200 and not self.suite.jwt_matches(r, tok)
            with self.lock:
                self.results.append((kind, status, elapsed, wrong))
        if sock is not None:
            sock.close()

    def _sample_rss(self):
        while not self.stop.wait(0.05):
            p = self.suite.stack.procs.get("agent")
            if p is not None:
                self.peak_rss_kb = max(self.peak_rss_kb, rss_kb(p.pid))

    def run(self, fault_on, fault_off, during=None):
        """Load for LOAD_SECONDS: fault_on() after PRE_SECONDS, fault_off() FAULT_SECONDS later;
        during(stop_event), when given, runs in its own thread while the fault is on."""
        threads = [threading.Thread(target=self._worker, args=(w,)) for w in range(WORKERS)]
        sampler = threading.Thread(target=self._sample_rss)
        for t in threads + [sampler]:
            t.start()
        try:
            time.sleep(PRE_SECONDS)
            fault_on()
            if during is not None:
                during_stop = threading.Event()
                dt = threading.Thread(target=during, args=(during_stop,))
                dt.start()
            time.sleep(FAULT_SECONDS)
            if during is not None:
                during_stop.set()
                dt.join(30)
            fault_off()
            time.sleep(POST_SECONDS)
        finally:
            self.stop.set()
            for t in threads + [sampler]:
                t.join(60)
        return self.results


class FaultSuite(harness.StackTestCase):
    STACK_ARGS = {"agent_args": ["--log-level", "info", "--metrics-listen",
                                 "127.0.0.1:%d" % METRICS_PORT,
                                 "--cache-max-bytes", "%dm" % CACHE_BUDGET_MB]}
    rows = []

    # --- set-up ---------------------------------------------------------------------------------

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.ledger = Ledger(cls.stack)
        cls.subs = {}  # token -> the sub its JWT must carry
        cls.serial = 0
        cls.cached = ["fault-cached-%02d-%s" % (i, os.urandom(6).hex())
                      for i in range(CACHED_TOKENS)]
        cls.register_all(cls.cached)
        for tok in cls.cached:
            r = cls.stack.get(tok)
            if r.status != 200:
                raise AssertionError("warm-up of %s: %r" % (harness.token_id(tok), r))
        cls.base_rss_kb = rss_kb(cls.stack.procs["agent"].pid)

    @classmethod
    def tearDownClass(cls):
        sys.stderr.write(cls.table())
        super().tearDownClass()

    @classmethod
    def register_all(cls, tokens):
        specs = []
        for tok in tokens:
            sub = "u-" + harness.token_id(tok)
            cls.subs[tok] = sub
            specs.append({"token": tok, "sub": sub, "scope": "openid read", "exp_in": 900})
        cls.stack._idp("POST", "/_control/tokens", {"tokens": specs})
        # A sample for the log-leak check (checking thousands would be slow, not more telling).
        cls.stack.secrets.update(tokens[:20])

    @classmethod
    def fresh_tokens(cls, n):
        cls.serial += 1
        toks = ["fault-new-%d-%05d-%s" % (cls.serial, i, os.urandom(6).hex()) for i in range(n)]
        cls.register_all(toks)
        return toks

    # --- checks ---------------------------------------------------------------------------------

    @classmethod
    def jwt_matches(cls, r, token):
        """A 200 must be the echo backend's answer, showing the JWT issued for this very token."""
        try:
            headers = r.json()["headers"]
            auth = [v for k, v in headers if k.lower() == "authorization"]
            if len(auth) != 1 or not auth[0].startswith("Bearer "):
                return False
            jwt = auth[0][7:]
            if len(cls.stack.secrets) < 200:
                cls.stack.secrets.add(jwt)
            return b64url_json(jwt.split(".")[1]).get("sub") == cls.subs.get(token)
        except (ValueError, KeyError, IndexError, TypeError, AttributeError):
            return False

    def echo(self, method, path):
        r = harness.http_request(self.stack.echo_port, method, path)
        self.assertEqual(r.status, 200, r)
        return r.json()

    agent_calls_gone = 0  # counted by agent processes since killed

    @classmethod
    def agent_idp_calls(cls):
        """Introspections the agent made (every outcome), from its /metrics, plus those of killed
        agents; None when the agent is not answering."""
        try:
            text = harness.http_request(METRICS_PORT, "GET", "/metrics", timeout=5).body.decode()
        except OSError:
            return None
        return cls.agent_calls_gone + sum(float(line.split()[-1]) for line in text.splitlines()
                                          if line.startswith("phantom_idp_requests_total{"))

    def unauthenticated_forwards(self):
        """Requests the API received whose Authorization was not a JWT from the test IdP."""
        received = self.echo("GET", "/_control/received")
        issued = self.ledger.snapshot()
        bad = {k: n for k, n in received["authorization"].items() if k not in issued}
        return sum(bad.values()), received["requests"]

    def wait_recovered(self):
        """After the fault: a token never seen before gets through again (polled, not timed)."""
        tok = self.fresh_tokens(1)[0]
        harness.wait_until(lambda: self.stack.get(tok).status == 200, 20,
                           "a new token to get 200 after the fault")

    # --- one case ---------------------------------------------------------------------------------

    def run_case(self, name, fault_on, fault_off, allowed, cached_always_ok=True, during=None,
                 note=""):
        self.stack.procs["agent"].check_alive()
        self.echo("POST", "/_control/reset")
        calls0, agent0 = self.ledger.calls(), self.agent_idp_calls()
        load = Load(self, name)
        results = load.run(fault_on, fault_off, during)
        self.wait_recovered()
        agent1 = self.agent_idp_calls()
        unauth, forwarded = self.unauthenticated_forwards()
        statuses = collections.Counter(st for _, st, _, _ in results)
        wrong = sum(1 for *_, w in results if w)
        cached_bad = collections.Counter(st for k, st, _, _ in results
                                         if k == "cached" and st != 200)
        row = {
            "case": name, "sent": len(results), "statuses": statuses, "forwarded": forwarded,
            "unauth": unauth, "wrong": wrong,
            "idp_seen": self.ledger.calls() - calls0,
            "idp_agent": (agent1 - agent0) if agent0 is not None and agent1 is not None
            and agent1 >= agent0 else None,
            "p50": percentile([e for _, _, e, _ in results], 0.50) * 1000,
            "p99": percentile([e for _, _, e, _ in results], 0.99) * 1000,
            "p99_cached": percentile([e for k, st, e, _ in results
                                      if k == "cached" and st == 200], 0.99) * 1000,
            "rss_mb": load.peak_rss_kb / 1024.0, "note": note,
        }
        self.rows.append(row)
        self.assertGreater(len(results), 0)
        self.assertEqual(unauth, 0, "requests reached the API without a JWT from the IdP")
        self.assertEqual(wrong, 0, "answers carried another token's JWT")
        self.assertLessEqual(set(statuses), allowed, "unexpected answers: %s" % statuses)
        if cached_always_ok:
            self.assertEqual(cached_bad, collections.Counter(),
                             "cached tokens were not answered 200 during %s" % name)
        bound_kb = self.base_rss_kb + (CACHE_BUDGET_MB + RSS_SLACK_MB) * 1024
        self.assertLess(load.peak_rss_kb, bound_kb, "agent RSS past the bound")
        self.stack.procs["agent"].check_alive()
        return row

    @classmethod
    def table(cls):
        head = ("case", "sent", "answers by status", "fwd", "unauth", "wrong", "idp agent/seen",
                "p50 ms", "p99 ms", "p99 cached", "RSS MB")
        lines = []
        for r in cls.rows:
            st = " ".join("%s:%d" % (k, v) for k, v in sorted(r["statuses"].items(),
                                                               key=lambda kv: str(kv[0])))
            agent = "?" if r["idp_agent"] is None else "%d" % r["idp_agent"]
            lines.append((r["case"], str(r["sent"]), st, str(r["forwarded"]), str(r["unauth"]),
                          str(r["wrong"]), "%s/%d" % (agent, r["idp_seen"]), "%.1f" % r["p50"],
                          "%.1f" % r["p99"], "%.1f" % r["p99_cached"], "%.1f" % r["rss_mb"]))
        widths = [max(len(x) for x in col) for col in zip(head, *lines)]
        fmt = "| " + " | ".join("%%-%ds" % w for w in widths) + " |\n"
        out = ["\nFault table (%d workers, %.0f s per case, %.0f s of it broken; RSS at start "
               "%.1f MB, cache budget %d MB)\n" % (WORKERS, LOAD_SECONDS, FAULT_SECONDS,
                                                   cls.base_rss_kb / 1024.0, CACHE_BUDGET_MB),
               fmt % head, fmt % tuple("-" * w for w in widths)]
        out += [fmt % line for line in lines]
        notes = ["  %s: %s\n" % (r["case"], r["note"]) for r in cls.rows if r["note"]]
        return "".join(out + notes)

    # --- IdP faults -------------------------------------------------------------------------------

    def idp_fault(self, name, **mode):
        return self.run_case(name, lambda: self.stack.idp_mode(**mode),
                             lambda: self.stack.idp_mode(), IDP_FAILED)

    def test_00_healthy(self):
        self.run_case("healthy", lambda: None, lambda: None, OK)

    def test_10_idp_refusing(self):
        """The IdP process is gone: connections are refused."""
        idp_secret = os.path.join(self.stack.tmpdir, "idp-secret")

        def down():
            self.ledger.before_stop()
            self.stack.procs.pop("idp").stop()

        def up():
            # A log of its own: start_py_server reads the port from the first READY line.
            n = sum(1 for name in os.listdir(self.stack.tmpdir) if name.startswith("idp"))
            p, _ = harness.start_py_server(
                "idp-%d" % n, [harness.IDP_PY, "--port", str(self.stack.idp_port), "--client-id",
                        harness.CLIENT_ID, "--secret-file", idp_secret], self.stack.tmpdir)
            self.stack.procs["idp"] = p
            # The tokens lived in the old process's memory.
            self.register_all(list(self.subs))

        self.run_case("idp refusing", down, up, IDP_FAILED)

    def test_11_idp_blackholed(self):
        self.idp_fault("idp blackholed", blackhole=True)

    def test_12_idp_slow(self):
        # 300 ms, well inside the 2 s introspection timeout; a 502 would only mean the box is
        # overloaded, which is not this case's question.
        self.idp_fault("idp slow 300ms", delay_ms=300)

    def test_13_idp_garbage_body(self):
        self.idp_fault("idp 200 garbage", garbage="body")

    def test_14_idp_garbage_wire(self):
        self.idp_fault("idp not HTTP", garbage="wire")

    def test_15_idp_huge_body(self):
        self.idp_fault("idp huge body", huge_body=64 * 1024 * 1024)

    def test_16_idp_reset_mid_body(self):
        self.idp_fault("idp reset mid-body", reset="mid_body")

    def test_17_idp_reset_before_answer(self):
        self.idp_fault("idp reset at once", reset="before")

    def test_18_idp_flapping(self):
        self.idp_fault("idp flapping", flap={"period_ms": 250, "down": {"status": 503}})

    def test_19_idp_503_retry_after(self):
        self.idp_fault("idp 503 Retry-After", status=503, headers={"Retry-After": "1"})

    # --- agent, HAProxy and SPOP faults -------------------------------------------------------------

    def test_20_agent_kill9_restart(self):
        def kill():
            # What it counted up to now (the few calls between this scrape and the kill are lost).
            FaultSuite.agent_calls_gone = self.agent_idp_calls() or 0
            self.stack.kill_agent(signal.SIGKILL)

        self.run_case("agent kill -9", kill,
                      self.stack.start_agent, AGENT_GONE, cached_always_ok=False,
                      note="cache lost with the process; HAProxy answers 503 until it is back")
        self.stack.wait_agent_up()
        for tok in self.cached:  # warm the new process's cache for the next cases
            self.assertEqual(self.stack.get(tok).status, 200)

    def test_21_haproxy_reload(self):
        """A new HAProxy takes over with -sf while the old one finishes its requests."""
        def reload():
            old = self.stack.procs["haproxy"]
            n = sum(1 for name in os.listdir(self.stack.tmpdir) if name.startswith("haproxy"))
            new = harness.Proc("haproxy-%d" % (n + 1),
                               [harness.HAPROXY, "-db", "-f", harness.HAPROXY_CFG,
                                "-sf", str(old.pid)],
                               self.stack.tmpdir, env=self.stack.haproxy_environ())
            self.stack.procs["haproxy"] = new
            old.popen.wait(30)
            old.stop()
            harness.wait_until(lambda: new.check_alive() and self.stack._stats_answers(), 15,
                               "the new haproxy")

        self.run_case("haproxy reload -sf", reload, lambda: None, OK | {"ERR"},
                      cached_always_ok=False,
                      note="ERR: keep-alive connections the old HAProxy closed (clients retry)")
        self.stack.wait_agent_up()

    def test_22_agent_sighup(self):
        def hups(stop):
            while not stop.wait(0.3):
                os.kill(self.stack.procs["agent"].pid, signal.SIGHUP)

        self.run_case("agent SIGHUP x10", lambda: None, lambda: None, OK, during=hups)
        self.assertIn("configuration reloaded", self.stack.log("agent"))

    def test_23_spop_resets(self):
        ss = shutil.which("ss")
        if not ss or not self._ss_kill_works(ss):
            self.skipTest("ss -K (socket destroy) is not available here")
        port = self.stack.agent_port

        def resets(stop):
            side = 0
            while not stop.wait(0.25):
                # Alternately the HAProxy end and the agent end of every SPOP connection.
                filt = ["dport", "=", ":%d" % port] if side % 2 == 0 else ["sport", "=",
                                                                         ":%d" % port]
                subprocess.run([ss, "-K", "-t", "state", "established"] + filt,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                side += 1

        self.run_case("SPOP conn resets", lambda: None, lambda: None, AGENT_GONE,
                      cached_always_ok=False, during=resets,
                      note="ss -K on both ends every 250 ms; requests in flight get 503")
        self.stack.wait_agent_up()

    @staticmethod
    def _ss_kill_works(ss):
        with socket.socket() as srv:
            srv.bind(("127.0.0.1", 0))
            srv.listen(1)
            port = srv.getsockname()[1]
            with socket.create_connection(("127.0.0.1", port), timeout=2) as c:
                a, _ = srv.accept()
                with a:
                    subprocess.run([ss, "-K", "-t", "state", "established", "dport", "=",
                                    ":%d" % port], stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL)
                    c.settimeout(1)
                    try:
                        c.recv(1)
                    except OSError:
                        return True
                    return False


if __name__ == "__main__":
    harness.run()
