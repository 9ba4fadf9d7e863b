#!/usr/bin/python3
"""Reload rules and addresses, through the real agent: a SIGHUP never applies a restart-only
option (max-frame-size, http-listen/metrics-listen, syslog) -- it names it in the log as ignored
and the agent keeps the running value (the next AGENT-HELLO still announces the old frame size) --
and --check-config accepts exactly the addresses a real start accepts (a name such as localhost
for http-listen)."""

import os
import signal
import socket
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
import test_spop_protocol as spop  # noqa: E402

OFFERED = 65532  # what the HAProxy side offers: more than either configured value


class RestartOnlyOptions(unittest.TestCase):
    def setUp(self):
        harness.require_binaries()
        self.tmp = tempfile.mkdtemp(prefix="pta-reload-rules-")
        self.conf = os.path.join(self.tmp, "agent.conf")
        self.port = harness.free_port()
        self.http_port = harness.free_port()
        self.write_conf("max-frame-size = 16380\nhttp-listen = 127.0.0.1:%d\nsyslog = no\n"
                        "access-log = no\n" % self.http_port)
        self.agent = harness.Proc("agent", [harness.AGENT, "--config", self.conf, "--listen",
                                            "127.0.0.1:%d" % self.port], self.tmp)
        harness.wait_until(lambda: self.agent.check_alive() and harness.port_open(self.port)
                           and harness.port_open(self.http_port), 10, "the agent")

    def tearDown(self):
        self.assertEqual(self.agent.stop(), 0, self.agent.log_text()[-2000:])
        harness.shutil.rmtree(self.tmp, ignore_errors=True)

    def write_conf(self, text):
        with open(self.conf, "w") as f:
            f.write(text)

    def announced_frame_size(self):
        c = spop.Conn(self.port)
        try:
            _, kv = c.hello(max_frame=OFFERED)
            return kv["max-frame-size"].value
        finally:
            c.close()

    def reload(self):
        before = self.agent.log_text().count("configuration reloaded")
        os.kill(self.agent.pid, signal.SIGHUP)
        harness.wait_until(lambda: self.agent.log_text().count("configuration reloaded") > before,
                           10, "the reload")

    def test_restart_only_changes_are_reported_and_ignored(self):
        self.assertEqual(self.announced_frame_size(), 16380)
        other_http = harness.free_port()
        # the old name of http-listen sets the same option
        self.write_conf("max-frame-size = 1024\nmetrics-listen = 127.0.0.1:%d\nsyslog = yes\n"
                        "access-log = yes\n" % other_http)
        self.reload()

        self.assertEqual(self.announced_frame_size(), 16380,
                         "a reload changed the frame size the agent announces")
        log = self.agent.log_text()
        for name in ("max-frame-size", "http-listen (formerly metrics-listen)", "syslog"):
            self.assertIn("reload: the change of %s is ignored" % name, log)
        self.assertNotIn("the change of access-log", log)  # live options are applied silently
        self.assertNotIn("the change of listen ", log)  # unchanged: not reported
        self.assertEqual(harness.http_request(self.http_port, "GET", "/healthz").status, 200)
        self.assertFalse(harness.port_open(other_http))
        # syslog = yes was not applied: the agent still logs to its stderr
        before = len(self.agent.log_text())
        self.reload()
        self.assertGreater(len(self.agent.log_text()), before)


class CheckConfigAgreesWithStart(unittest.TestCase):
    def setUp(self):
        harness.require_binaries()
        self.tmp = tempfile.mkdtemp(prefix="pta-check-start-")
        self.agent = None

    def tearDown(self):
        if self.agent:
            self.agent.stop()
        harness.shutil.rmtree(self.tmp, ignore_errors=True)

    def argv(self, http_listen):
        return [harness.AGENT, "--listen", "127.0.0.1:%d" % harness.free_port(),
                "--metrics-listen", http_listen]

    def check(self, http_listen):
        return subprocess.run(self.argv(http_listen) + ["--check-config"], capture_output=True,
                              text=True, timeout=10)

    def test_localhost_is_valid_and_starts(self):
        port = harness.free_port()
        p = self.check("localhost:%d" % port)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn("configuration is valid", p.stdout)
        self.agent = harness.Proc("agent", self.argv("localhost:%d" % port), self.tmp)
        harness.wait_until(lambda: self.agent.check_alive() and
                           harness.port_open(port, "localhost"), 10, "the HTTP endpoint")
        r = harness.http_request(port, "GET", "/healthz", host="localhost")
        self.assertEqual((r.status, r.body), (200, b"ok\n"))

    def test_http_listen_in_use_is_reported_through_the_log(self):
        taken = socket.socket()
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        try:
            port = taken.getsockname()[1]
            run = subprocess.run(self.argv("127.0.0.1:%d" % port), capture_output=True, text=True,
                                 timeout=10)
        finally:
            taken.close()
        self.assertNotEqual(run.returncode, 0, run.stderr)
        self.assertIn("http: ", run.stderr)  # MHD's own message, through log.c
        for line in run.stderr.splitlines():  # every line is one of log.c's
            self.assertRegex(line, r"^\d{4}-\d\d-\d\dT[0-9:.]+Z (error|warn|info) ")

    def test_a_bad_address_fails_both_alike(self):
        for value, message in (("localhost", "expected host:port"),
                               ("unix:/run/m.sock", "the port must be")):
            p = self.check(value)
            self.assertEqual(p.returncode, 2, (value, p.stdout))
            self.assertIn(message, p.stderr)
            run = subprocess.run(self.argv(value), capture_output=True, text=True, timeout=10)
            self.assertEqual(run.returncode, 2, (value, run.stderr))
            self.assertIn(message, run.stderr)


class AdminTokenRotation(unittest.TestCase):
    """A SIGHUP re-reads the admin token even when a restart-only option changed to a value that
    would not start (an ignored change must not block a rotation)."""

    def setUp(self):
        harness.require_binaries()
        self.tmp = tempfile.mkdtemp(prefix="pta-reload-token-")
        self.conf = os.path.join(self.tmp, "agent.conf")
        self.tok = os.path.join(self.tmp, "admin.tok")
        self.port = harness.free_port()
        self.http_port = harness.free_port()
        self.write_token("token-A")
        self.write_conf("127.0.0.1:%d" % self.port)
        self.agent = harness.Proc("agent", [harness.AGENT, "--config", self.conf], self.tmp)
        harness.wait_until(lambda: self.agent.check_alive() and harness.port_open(self.port)
                           and harness.port_open(self.http_port), 10, "the agent")

    def tearDown(self):
        self.assertEqual(self.agent.stop(), 0, self.agent.log_text()[-2000:])
        harness.shutil.rmtree(self.tmp, ignore_errors=True)

    def write_conf(self, listen):
        with open(self.conf, "w") as f:
            f.write("listen = %s\nhttp-listen = 127.0.0.1:%d\nadmin-token-file = %s\n"
                    % (listen, self.http_port, self.tok))

    def write_token(self, token, mode=0o600):
        with open(self.tok, "w") as f:
            f.write(token + "\n")
        os.chmod(self.tok, mode)

    def status(self, token):
        return harness.http_request(self.http_port, "GET", "/admin/status",
                                    headers=[("Authorization", "Bearer " + token)]).status

    def reload(self, done):
        before = self.agent.log_text().count(done)
        os.kill(self.agent.pid, signal.SIGHUP)
        harness.wait_until(lambda: self.agent.log_text().count(done) > before, 10, "the reload")

    def test_rotation_with_an_unresolvable_listen(self):
        self.assertEqual(self.status("token-A"), 200)
        self.write_token("token-B")
        self.write_conf("nosuchhost.invalid:1")
        self.reload("configuration reloaded")
        self.assertEqual(self.status("token-B"), 200)
        self.assertEqual(self.status("token-A"), 401)
        self.assertIn("reload: the change of listen is ignored", self.agent.log_text())
        self.assertNotIn("cannot resolve", self.agent.log_text())  # not even looked up

    def test_unreadable_new_token_switches_admin_off(self):
        self.write_token("token-B", 0o644)  # refused (other users could read it)
        self.write_conf("127.0.0.1:%d" % self.port)
        self.reload("configuration reloaded")  # the rest of the reload still applies
        self.assertIn("the admin API over http-listen is OFF", self.agent.log_text())
        self.assertNotEqual(self.status("token-A"), 200)  # the old token is no longer valid
        self.assertNotEqual(self.status("token-B"), 200)
        self.write_token("token-B")
        self.reload("configuration reloaded")
        self.assertEqual(self.status("token-B"), 200)


if __name__ == "__main__":
    harness.run()
