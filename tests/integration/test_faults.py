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

Bounded: each case runs LOAD_SECONDS of load (at most RATE requests per second, MAX_REQUESTS in
all) with WORKERS keep-alive clients: 1 s healthy, FAULT_SECONDS broken, then healthy again.

The agent runs with its defaults for retries and the circuit breaker (5 consecutive failures),
but a 2 s breaker-open-time instead of 5 s, so that recovery after each case stays short. Further
cases: retries rescuing an IdP that fails each token's first call; with the IdP failing and the
breaker open, misses answered at once (the latency over a direct SPOP connection is printed, not
asserted) while the IdP sees only the probes; and a second stack with stale-if-error on, where
cached tokens whose entries have expired keep working through an IdP outage.
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
import tempfile
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from test_daemon import SpopClient, frame, raw  # noqa: E402  (a minimal HAProxy stand-in)

WORKERS = int(os.environ.get("PTA_FAULTS_WORKERS", "8"))
# The load is paced (each worker at most RATE / WORKERS requests per second) so that it spans every
# phase of a case on a fast machine as on a slow one; MAX_REQUESTS is a safety bound.
RATE = int(os.environ.get("PTA_FAULTS_RATE", "600"))
MAX_REQUESTS = int(os.environ.get("PTA_FAULTS_MAX_REQUESTS", "4000"))
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


ROWS = []   # every case of every class, printed at the end of the module
NOTES = []  # measurements printed under the table


def tearDownModule():  # noqa: N802 (unittest's name)
    sys.stderr.write(table())


def table():
    head = ("case", "sent", "answers by status", "fwd", "unauth", "wrong", "idp agent/seen",
            "p50 ms", "p99 ms", "p99 cached", "RSS MB")
    lines = []
    for r in ROWS:
        st = " ".join("%s:%d" % (k, v) for k, v in sorted(r["statuses"].items(),
                                                           key=lambda kv: str(kv[0])))
        agent = "?" if r["idp_agent"] is None else "%d" % r["idp_agent"]
        lines.append((r["case"], str(r["sent"]), st, str(r["forwarded"]), str(r["unauth"]),
                      str(r["wrong"]), "%s/%d" % (agent, r["idp_seen"]), "%.1f" % r["p50"],
                      "%.1f" % r["p99"], "%.1f" % r["p99_cached"], "%.1f" % r["rss_mb"]))
    if not lines:
        return ""
    widths = [max(len(x) for x in col) for col in zip(head, *lines)]
    fmt = "| " + " | ".join("%%-%ds" % w for w in widths) + " |\n"
    out = ["\nFault table (%d workers, at most %d req/s, %.0f s per case, %.0f s of it broken; "
           "cache budget %d MB)\n" % (WORKERS, RATE, LOAD_SECONDS, FAULT_SECONDS, CACHE_BUDGET_MB),
           fmt % head, fmt % tuple("-" * w for w in widths)]
    out += [fmt % line for line in lines]
    out += ["  %s: %s\n" % (r["case"], r["note"]) for r in ROWS if r["note"]]
    out += ["  %s\n" % n for n in NOTES]
    return "".join(out)


def notify(client, fid, token):
    """One NOTIFY with "Authorization: Bearer <token>" on a SpopClient; returns (status, ACK)."""
    auth = ("Bearer " + token).encode()
    msg = raw(b"check-token") + bytes([1]) + raw(b"authorization") + b"\x08" + raw(auth)
    client.sock.sendall(frame(3, 9, fid, msg))
    ftype, body = client.read_frame()
    if ftype != 103:
        raise AssertionError("expected ACK, got %d" % ftype)
    return ack_int(body, b"status"), body


def ack_int(body, name):
    """The integer a set-var action of the ACK gives name (SPOP int types 2..5), or None."""
    at = body.find(bytes([len(name)]) + name)
    if at < 0:
        return None
    i = at + 1 + len(name)
    if body[i] & 0x0F not in (2, 3, 4, 5):
        return None
    i += 1
    n = body[i]
    if n < 240:
        return n
    value, shift = n, 4
    i += 1
    while True:
        b = body[i]
        value += b << shift
        shift += 7
        i += 1
        if b < 128:
            return value


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
        self.new_tokens = collections.deque(suite.fresh_tokens(
            min(MAX_REQUESTS, int(RATE * LOAD_SECONDS)) // 4 + WORKERS))
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
        period = WORKERS / float(RATE)
        t_start = time.monotonic()
        while not self.stop.is_set() and self._take_slot():
            ahead = t_start + i * period - time.monotonic()
            if ahead > 0 and self.stop.wait(ahead):
                break
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


def agent_args(metrics_port, *extra):
    return {"agent_args": ["--log-level", "info", "--access-log", "--metrics-listen",
                           "127.0.0.1:%d" % metrics_port, "--cache-max-bytes",
                           "%dm" % CACHE_BUDGET_MB, "--breaker-open-time", "2s"] + list(extra)}


class FaultMixin:
    """The load, the counting and the checks, for the test classes below."""
    METRICS_PORT = METRICS_PORT

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
    def metrics_text(cls):
        try:
            return harness.http_request(cls.METRICS_PORT, "GET", "/metrics",
                                        timeout=5).body.decode()
        except OSError:
            return None

    @classmethod
    def metric(cls, prefix):
        """The sum of every sample whose line starts with prefix; None when unreachable."""
        text = cls.metrics_text()
        if text is None:
            return None
        return sum(float(line.split()[-1]) for line in text.splitlines()
                   if line.startswith(prefix))

    @classmethod
    def agent_idp_calls(cls):
        """Introspections the agent made (every outcome), from its /metrics, plus those of killed
        agents; None when the agent is not answering."""
        n = cls.metric("phantom_idp_requests_total{")
        return None if n is None else cls.agent_calls_gone + n

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
        ROWS.append(row)
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

    def idp_down(self):
        """Stops the IdP process (connections are refused); idp_up() starts a new one."""
        self.ledger.before_stop()
        self.stack.procs.pop("idp").stop()

    def idp_up(self):
        # A log of its own: start_py_server reads the port from the first READY line.
        n = sum(1 for name in os.listdir(self.stack.tmpdir) if name.startswith("idp"))
        p, _ = harness.start_py_server(
            "idp-%d" % n, [harness.IDP_PY, "--port", str(self.stack.idp_port), "--client-id",
                           harness.CLIENT_ID, "--secret-file",
                           os.path.join(self.stack.tmpdir, "idp-secret")], self.stack.tmpdir)
        self.stack.procs["idp"] = p
        self.register_all(list(self.subs))  # the tokens lived in the old process's memory


class FaultSuite(FaultMixin, harness.StackTestCase):
    STACK_ARGS = agent_args(METRICS_PORT)

    # --- IdP faults -------------------------------------------------------------------------------

    def idp_fault(self, name, **mode):
        return self.run_case(name, lambda: self.stack.idp_mode(**mode),
                             lambda: self.stack.idp_mode(), IDP_FAILED)

    def test_00_healthy(self):
        self.run_case("healthy", lambda: None, lambda: None, OK)

    def test_10_idp_refusing(self):
        """The IdP process is gone: connections are refused."""
        self.run_case("idp refusing", self.idp_down, self.idp_up, IDP_FAILED)

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

    def retry_case(self, name, **mode):
        """The IdP fails each token's first call only: the agent's one retry gets every new
        token through (200), so only OK answers are allowed."""
        retries0 = self.metric("phantom_idp_retries_total") or 0
        row = self.run_case(name, lambda: self.stack.idp_mode(once=True, **mode),
                            lambda: self.stack.idp_mode(), OK)
        retried = (self.metric("phantom_idp_retries_total") or 0) - retries0
        row["note"] = "%d introspections retried" % retried
        self.assertGreater(retried, 0)

    def test_1a_retry_reset_before_answer(self):
        self.retry_case("idp reset once, retried", reset="before")

    def test_1b_retry_503_retry_after(self):
        self.retry_case("idp 503 RA:0 once, retried", status=503, headers={"Retry-After": "0"})

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

    # --- the circuit breaker ----------------------------------------------------------------------

    def test_30_breaker_open_fails_fast(self):
        """The IdP answers 500 to everything: after 5 failures the breaker opens; misses are then
        answered 503 at once (with retry_after) and the IdP sees only one probe per open time."""
        open_s = 2.0
        seen = {}

        def measure(stop):
            harness.wait_until(lambda: (self.metric("phantom_breaker_state") or 0) >= 1, 10,
                               "the breaker to open")
            seen["t0"], seen["calls0"] = time.monotonic(), self.ledger.calls()
            client = SpopClient(self.stack.agent_port)
            lat, statuses, retry_after = [], collections.Counter(), set()
            try:
                for fid in range(1, 301):
                    tok = "fault-breaker-miss-%d-%s" % (fid, os.urandom(4).hex())
                    t0 = time.perf_counter()
                    status, body = notify(client, fid, tok)
                    lat.append(time.perf_counter() - t0)
                    statuses[status] += 1
                    if status == 503:
                        retry_after.add(ack_int(body, b"retry_after"))
            finally:
                client.close()
            seen.update(lat=lat, statuses=statuses, retry_after=retry_after)
            stop.wait(30)
            seen["t1"], seen["calls1"] = time.monotonic(), self.ledger.calls()

        self.run_case("idp 500, breaker open", lambda: self.stack.idp_mode(status=500),
                      lambda: self.stack.idp_mode(), IDP_FAILED, during=measure,
                      note="misses answered 503 without calling the IdP while open")
        lat, statuses = seen["lat"], seen["statuses"]
        NOTES.append("breaker open: %d misses over direct SPOP: p50 %.3f ms, p99 %.3f ms, max "
                     "%.3f ms; statuses %s; retry_after %s" % (
                         len(lat), percentile(lat, 0.5) * 1e3, percentile(lat, 0.99) * 1e3,
                         max(lat) * 1e3, dict(statuses), sorted(x for x in seen["retry_after"]
                                                                 if x is not None)))
        elapsed = seen["t1"] - seen["t0"]
        calls = seen["calls1"] - seen["calls0"]
        NOTES.append("breaker open: the IdP saw %d calls in %.1f s of outage (one probe per %.0f s "
                     "open time allows %d)" % (calls, elapsed, open_s, int(elapsed / open_s) + 1))
        # Probes only: one per open time, plus one in flight at each boundary.
        self.assertLessEqual(calls, int(elapsed / open_s) + 2)
        self.assertGreaterEqual(statuses[503], 1)
        self.assertLessEqual(set(statuses), {503, 500, 502})
        self.assertTrue(seen["retry_after"] - {None}, "503s without retry_after")
        self.assertIn("circuit breaker for 127.0.0.1", self.stack.log("agent"))
        transitions = self.metric('phantom_breaker_transitions_total{worker="0",to="open"}')
        self.assertGreaterEqual(transitions, 1)
        self.assertGreater(self.metric("phantom_breaker_open_seconds_total"), 0)

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



class StaleIfErrorSuite(FaultMixin, harness.StackTestCase):
    """stale-if-error on, entries living 1 s: through an IdP outage the cached tokens, whose
    entries expire during it, keep being answered 200 from their stale entries (with the JWT the
    IdP issued before), while new tokens are refused."""
    METRICS_PORT = harness.free_port()
    STACK_ARGS = agent_args(METRICS_PORT, "--cache-stale-if-error", "60s", "--cache-max-ttl", "1s")

    def test_40_outage_with_stale_if_error(self):
        stale0 = self.metric("phantom_stale_answers_total") or 0
        row = self.run_case("idp refusing, stale-if-error", self.idp_down, self.idp_up,
                            IDP_FAILED, cached_always_ok=True)
        stale = (self.metric("phantom_stale_answers_total") or 0) - stale0
        row["note"] = "cache-max-ttl 1s: %d answers served stale" % stale
        self.assertGreater(stale, 0)
        self.assertIn("cache=stale", self.stack.log("agent"))
        new_failed = row["statuses"].get(502, 0) + row["statuses"].get(503, 0)
        self.assertGreater(new_failed, 0, "new tokens cannot have worked during the outage")

    def test_41_stale_never_for_unknown_tokens(self):
        """Tokens the IdP said were inactive are never served stale: 401 before, 5xx during."""
        tok = "fault-stale-unknown-%s" % os.urandom(4).hex()
        self.stack.secrets.add(tok)
        self.assertEqual(self.stack.get(tok).status, 401)
        self.idp_down()
        try:
            statuses = {self.stack.get(tok).status for _ in range(3)}
        finally:
            self.idp_up()
        # The negative entry (5 s) may still answer 401 at first; never a 200.
        self.assertLessEqual(statuses, {401, 502, 503})



class RetryAfterHeader(harness.StackTestCase):
    """The open breaker's 503 reaches the client with Retry-After: the cool-down left."""
    STACK_ARGS = {"agent_args": ["--breaker-failures", "1", "--breaker-open-time", "30s"]}

    def test_retry_after_on_open_breaker(self):
        s = self.stack
        s.idp_mode(status=500)
        first = s.register("fault-ra-first-%s" % os.urandom(4).hex())
        self.assertEqual(s.get(first).status, 502)  # the failure that opens the breaker
        calls = s.idp_calls()
        second = s.register("fault-ra-second-%s" % os.urandom(4).hex())
        r = s.get(second)
        self.assertEqual(r.status, 503, r)
        self.assertEqual(r.json()["code"], "server_error")
        self.assertIn(r.header("Retry-After"), [str(n) for n in range(1, 31)], r)
        self.assertEqual(s.idp_calls(), calls)  # answered without calling the IdP
        s.idp_mode()


if __name__ == "__main__":
    harness.run()
