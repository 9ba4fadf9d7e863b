#!/usr/bin/python3
"""The agent as a daemon operators run: Prometheus metrics with exact counters after a known
sequence of requests, SIGHUP reload that keeps the cache and the HAProxy connections and refuses a
bad file, SIGTERM drain that answers what is in flight and exits 0, and --check-config errors that
name the file and line."""

import os
import re
import signal
import socket
import struct
import subprocess
import sys
import threading
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402


def scrape(port, path="/metrics"):
    return harness.http_request(port, "GET", path)


def metric(text, name, labels=""):
    """The value of one sample of the Prometheus text, e.g. metric(t, "x_total", 'status="200"')."""
    key = name + ("{%s}" % labels if labels else "")
    for line in text.splitlines():
        if line.startswith(key + " "):
            return float(line.split()[-1])
    raise AssertionError("no sample %s in:\n%s" % (key, text))


def varint(n):
    """HAProxy's SPOP varint."""
    if n < 240:
        return bytes([n])
    out = [(n & 0x0F) | 0xF0]
    n = (n - 240) >> 4
    while n >= 128:
        out.append((n & 0x7F) | 0x80)
        n = (n - 128) >> 7
    out.append(n)
    return bytes(out)


def raw(s):
    return varint(len(s)) + s


def frame(ftype, sid, fid, payload):
    body = bytes([ftype]) + struct.pack(">I", 1) + varint(sid) + varint(fid) + payload
    return struct.pack(">I", len(body)) + body


class SpopClient:
    """A minimal HAProxy stand-in: one SPOP connection that says HELLO and sends NOTIFYs."""

    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        hello = (raw(b"supported-versions") + b"\x08" + raw(b"2.0") + raw(b"max-frame-size") +
                 b"\x03" + varint(16380) + raw(b"capabilities") + b"\x08" + raw(b"pipelining"))
        self.sock.sendall(frame(1, 0, 0, hello))
        ftype, _ = self.read_frame()
        assert ftype == 101, "expected AGENT-HELLO, got %d" % ftype

    def read_frame(self):
        n = struct.unpack(">I", self._read(4))[0]
        body = self._read(n)
        return body[0], body

    def _read(self, n):
        buf = b""
        while len(buf) < n:
            chunk = self.sock.recv(n - len(buf))
            if not chunk:
                raise ConnectionError("agent closed the connection")
            buf += chunk
        return buf

    def notify_without_credentials(self, fid):
        """A NOTIFY whose authorization argument is NULL; returns the ACK's bytes."""
        msg = raw(b"check-token") + bytes([1]) + raw(b"authorization") + b"\x00"
        self.sock.sendall(frame(3, 7, fid, msg))
        ftype, body = self.read_frame()
        assert ftype == 103, "expected ACK, got %d" % ftype
        return body

    def close(self):
        self.sock.close()


class Metrics(harness.StackTestCase):
    """A fresh stack, so every counter starts at zero and the sequence below is all it saw."""

    METRICS_PORT = harness.free_port()
    STACK_ARGS = {"agent_args": ["--metrics-listen", "127.0.0.1:%d" % METRICS_PORT]}

    def test_counters_after_a_known_sequence(self):
        s = self.stack
        good = s.register("metrics-good-token-0001", scope="openid read")
        s.register("metrics-scoped-token-0002", scope="openid")
        self.assertEqual(s.get().status, 401)                                   # no credentials
        self.assertEqual(s.get(good).status, 200)                               # miss
        self.assertEqual(s.get(good).status, 200)                               # hit
        self.assertEqual(s.get(good).status, 200)                               # hit
        self.assertEqual(s.get(good, path="/api/admin").status, 403)            # hit, scope
        self.assertEqual(s.get("metrics-unknown-token-03").status, 401)         # miss, inactive
        self.assertEqual(s.get("metrics-unknown-token-03").status, 401)         # negative hit
        self.assertEqual(s.request(headers=[("Authorization", "Bearer a b")]).status, 400)

        r = scrape(self.METRICS_PORT)
        self.assertEqual(r.status, 200, r)
        self.assertIn("text/plain", r.header("Content-Type"))
        t = r.body.decode()
        expected = {
            ('phantom_decisions_total', 'status="200"'): 3,
            ('phantom_decisions_total', 'status="400"'): 1,
            ('phantom_decisions_total', 'status="401"'): 3,
            ('phantom_decisions_total', 'status="403"'): 1,
            ('phantom_decisions_total', 'status="502"'): 0,
            ('phantom_decisions_total', 'status="503"'): 0,
            ('phantom_idp_requests_total', 'outcome="active"'): 1,
            ('phantom_idp_requests_total', 'outcome="inactive"'): 1,
            ('phantom_idp_requests_total', 'outcome="error"'): 0,
            ('phantom_cache_lookups_total', 'result="hit"'): 3,
            ('phantom_cache_lookups_total', 'result="negative"'): 1,
            ('phantom_cache_lookups_total', 'result="miss"'): 2,
            ('phantom_cache_lookups_total', 'result="coalesced"'): 0,
            ('phantom_cache_entries', ''): 2,
            ('phantom_idp_latency_seconds_count', ''): 2,
            ('phantom_idp_inflight', ''): 0,
            ('phantom_spop_errors_total', ''): 0,
        }
        for (name, labels), value in expected.items():
            self.assertEqual(metric(t, name, labels), value, "%s{%s}" % (name, labels))
        self.assertGreater(metric(t, "phantom_cache_bytes"), 0)
        self.assertGreaterEqual(metric(t, "phantom_spop_connections"), 1)
        self.assertEqual(s.idp_calls(), 2)

    def test_healthz_and_unknown_paths(self):
        r = scrape(self.METRICS_PORT, "/healthz")
        self.assertEqual((r.status, r.body), (200, b"ok\n"))
        self.assertEqual(scrape(self.METRICS_PORT, "/nope").status, 404)


class AccessLog(harness.StackTestCase):
    """--access-log: one line per decision with the token's hash, never the token."""

    STACK_ARGS = {"agent_args": ["--access-log"]}

    def test_one_line_per_decision(self):
        s = self.stack
        tok = s.register("access-log-token-0001", sub="carol", behaviour={"delay_ms": 50})
        self.assertEqual(s.get(tok).status, 200)
        self.assertEqual(s.get(tok).status, 200)
        self.assertEqual(s.get().status, 401)
        lines = [l for l in s.log("agent").splitlines() if " decision " in l]
        tid = harness.token_id(tok)
        self.assertEqual(len(lines), 3, lines)
        miss = re.search(r"decision token=%s status=200 error=- cache=miss idp_ms=([0-9.]+) "
                         r"sub=carol$" % tid, lines[0])
        self.assertTrue(miss, lines[0])
        self.assertGreaterEqual(float(miss.group(1)), 40.0)  # it did wait for the IdP's 50 ms
        self.assertRegex(lines[1], r"decision token=%s status=200 error=- cache=hit idp_ms=- "
                                   r"sub=carol$" % tid)
        self.assertRegex(lines[2], r"decision token=- status=401 error=- cache=- idp_ms=- sub=-$")


class Reload(harness.StackTestCase):
    """The agent reads a config file; SIGHUP re-reads it."""

    @classmethod
    def setUpClass(cls):
        tmp = harness.tempfile.mkdtemp(prefix="pta-reload-")
        cls.conf_path = os.path.join(tmp, "agent.conf")
        with open(cls.conf_path, "w") as f:
            f.write("# initial\ncache-max-ttl = 300s\naccess-log = no\n")
        cls.STACK_ARGS = {"agent_args": ["--config", cls.conf_path]}
        super().setUpClass()

    def write_conf(self, text):
        with open(self.conf_path, "w") as f:
            f.write(text)

    def hup_and_wait(self, marker):
        agent = self.stack.procs["agent"]
        before = agent.log_text().count(marker)
        os.kill(agent.pid, signal.SIGHUP)
        harness.wait_until(lambda: agent.log_text().count(marker) > before, 10, marker)

    def test_reload_keeps_cache_and_connections_and_applies_the_new_file(self):
        s = self.stack
        tok = s.register("reload-token-0001")
        self.assertEqual(s.get(tok).status, 200)
        self.assertEqual(s.idp_calls(tok), 1)
        spop = SpopClient(s.agent_port)  # a connection open across the reload
        self.assertIn(b"status", spop.notify_without_credentials(1))

        self.write_conf("cache-max-ttl = 300s\naccess-log = yes\n")
        self.hup_and_wait("configuration reloaded")

        self.assertIn(b"status", spop.notify_without_credentials(2), "connection lost on reload")
        spop.close()
        self.assertEqual(s.get(tok).status, 200)
        self.assertEqual(s.idp_calls(tok), 1, "the cache was lost on reload")
        self.assertIn("decision token=%s status=200" % harness.token_id(tok),
                      s.procs["agent"].log_text(), "access-log = yes was not applied")
        self.assertTrue(s.procs["agent"].alive())

    def test_bad_file_is_refused_and_the_old_config_stays(self):
        s = self.stack
        tok = s.register("reload-token-0002")
        self.assertEqual(s.get(tok).status, 200)
        self.write_conf("cache-max-ttl = 300s\nno-such-option = 1\n")
        self.hup_and_wait("reload refused")
        self.assertRegex(s.procs["agent"].log_text(),
                         re.escape(self.conf_path) + r":2: unknown option 'no-such-option'")
        self.assertEqual(s.get(tok).status, 200)
        self.assertTrue(s.procs["agent"].alive())
        self.write_conf("cache-max-ttl = 300s\n")


class ReloadCredentials(harness.StackTestCase):
    """A rotated client secret is picked up by SIGHUP, without a restart."""

    STACK_ARGS = {"agent_secret": "the-old-secret-the-idp-refuses"}

    def test_new_secret_after_sighup(self):
        s = self.stack
        tok = s.register("rotated-secret-token-0001")
        self.assertEqual(s.get(tok).status, 502)  # the IdP answers 401 to the old secret
        s._secret_file("agent-secret", harness.CLIENT_SECRET)  # the file the agent was given
        agent = s.procs["agent"]
        os.kill(agent.pid, signal.SIGHUP)
        harness.wait_until(lambda: "configuration reloaded" in agent.log_text(), 10, "reload")
        self.assertEqual(s.get(tok).status, 200)  # errors are never cached


class Drain(unittest.TestCase):
    """SIGTERM: stop accepting, answer what is in flight, exit 0."""

    def setUp(self):
        self.metrics_port = harness.free_port()
        self.stack = harness.Stack(agent_args=[
            "--drain-timeout", "5s", "--metrics-listen", "127.0.0.1:%d" % self.metrics_port]).start()

    def tearDown(self):
        self.stack.stop()

    def test_in_flight_request_is_answered_then_exit_0(self):
        s = self.stack
        tok = s.register("drain-token-0001", behaviour={"delay_ms": 1200})
        result = {}
        t = threading.Thread(target=lambda: result.update(r=s.get(tok)))
        t.start()
        harness.wait_until(lambda: s.idp_stats().get("in_flight", 0) >= 1, 10,
                           "the introspection to reach the IdP")
        agent = s.procs["agent"]
        self.assertEqual(scrape(self.metrics_port, "/healthz").status, 200)
        os.kill(agent.pid, signal.SIGTERM)
        harness.wait_until(lambda: "stopping: draining" in agent.log_text(), 5, "the drain")
        r = scrape(self.metrics_port, "/healthz")
        self.assertEqual((r.status, r.body), (503, b"draining\n"))
        t.join(15)
        self.assertEqual(result["r"].status, 200, "the in-flight request was not answered")
        self.assertEqual(agent.popen.wait(10), 0, agent.log_text()[-2000:])
        self.assertFalse(harness.port_open(s.agent_port))
        self.assertIn("stopping: draining", agent.log_text())
        # With the agent gone, HAProxy fails closed.
        self.assertEqual(s.get(tok).status, 503)


class CheckConfig(unittest.TestCase):
    def setUp(self):
        harness.require_binaries()
        self.tmp = harness.tempfile.mkdtemp(prefix="pta-check-")

    def tearDown(self):
        harness.shutil.rmtree(self.tmp, ignore_errors=True)

    def check(self, text, *extra):
        path = os.path.join(self.tmp, "agent.conf")
        with open(path, "w") as f:
            f.write(text)
        p = subprocess.run([harness.AGENT, "--config", path, "--check-config"] + list(extra),
                           capture_output=True, text=True, timeout=10)
        return p, path

    def test_errors_name_file_and_line(self):
        cases = [
            ("listen = 127.0.0.1:12345\n\ncache-max-ttl = 12x\n",
             r":3: bad value for cache-max-ttl: '12x'"),
            ("# comment\nfrobnicate = yes\n", r":2: unknown option 'frobnicate'"),
            ("max-frame-size = 100\n", r":1: bad value for max-frame-size"),
            ("introspection-url = ftp://idp/x\n", r":1: bad value for introspection-url"),
        ]
        for text, pattern in cases:
            p, path = self.check(text)
            self.assertEqual(p.returncode, 2, (text, p.stdout, p.stderr))
            self.assertRegex(p.stderr, re.escape(path) + pattern)

    def test_cross_checks(self):
        p, _ = self.check("introspection-url = https://idp.example/introspect\n"
                          "client-id = agent\n", "--client-auth", "basic")
        self.assertEqual(p.returncode, 2, p)
        self.assertIn("secret", p.stderr)

    def test_valid_file(self):
        example = os.path.join(harness.SOURCE_DIR, "contrib", "agent.conf")
        p = subprocess.run([harness.AGENT, "--config", example, "--check-config"],
                           capture_output=True, text=True, timeout=10)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn("configuration is valid", p.stdout)


if __name__ == "__main__":
    harness.run()
