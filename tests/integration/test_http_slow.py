#!/usr/bin/python3
"""Slow HTTP clients cannot lock the monitoring out: 16 connections that trickle a header line
every second (each byte restarts MHD's idle timeout) are cut at the request deadline, and one
client address holds at most a few slots, so /healthz answers again while they keep trickling."""

import os
import socket
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402


class SlowClients(unittest.TestCase):
    def setUp(self):
        harness.require_binaries()
        self.tmp = tempfile.mkdtemp(prefix="pta-http-slow-")
        self.port = harness.free_port()
        self.http_port = harness.free_port()
        self.agent = harness.Proc("agent", [harness.AGENT, "--listen", "127.0.0.1:%d" % self.port,
                                            "--http-listen", "127.0.0.1:%d" % self.http_port],
                                  self.tmp)
        harness.wait_until(lambda: self.agent.check_alive() and harness.port_open(self.http_port),
                           10, "the agent")
        self.slow = []

    def tearDown(self):
        for s in self.slow:
            s.close()
        self.assertEqual(self.agent.stop(), 0, self.agent.log_text()[-2000:])
        harness.shutil.rmtree(self.tmp, ignore_errors=True)

    def trickle(self):
        for s in self.slow:
            try:
                s.sendall(b"X-a: b\r\n")
            except OSError:
                pass  # cut by the agent: what the test waits for

    def healthz(self):
        self.trickle()
        try:
            return harness.http_request(self.http_port, "GET", "/healthz", timeout=1).status
        except OSError:
            return None

    def test_trickling_clients_do_not_lock_out_healthz(self):
        for _ in range(16):
            s = socket.create_connection(("127.0.0.1", self.http_port))
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
            self.slow.append(s)
        harness.wait_until(lambda: self.healthz() == 200, 30, "/healthz behind slow clients",
                           interval=1)
        self.assertTrue(self.agent.check_alive())


if __name__ == "__main__":
    harness.run()
