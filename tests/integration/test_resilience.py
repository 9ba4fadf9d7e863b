#!/usr/bin/python3
"""HAProxy and the agent under stress and failure: SPOP health checks, pipelined concurrent
requests, and failing closed (503, never forwarded) when the agent is killed or hangs, with
recovery once it is back."""

import os
import signal
import socket
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

SERVER_ERROR = {"code": "server_error", "message": "Problem encountered processing the request"}


class ResilienceTest(harness.StackTestCase):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.good = cls.stack.register("opaque-resilience-good-0001")
        cls.admin = cls.stack.register("opaque-resilience-admin-0002", scope="admin")

    def assertFailedClosed(self, r):
        self.assertEqual(r.status, 503, r)
        self.assertEqual(r.json(), SERVER_ERROR)

    def test_a_spop_check_marks_agent_up(self):
        row = self.stack.agent_server_stat()
        self.assertEqual(row["status"], "UP")
        self.assertTrue(row["check_status"].startswith("L7OK"), row["check_status"])
        state = self.stack.haproxy_cmd("show servers state phantom-agents")
        line = [l for l in state.splitlines() if " agent1 " in l][0].split()
        self.assertEqual(line[5], "2", state)  # srv_op_state 2 = running

    def test_pipelined_concurrent_requests(self):
        """20 connections x 10 HTTP-pipelined requests, mixed outcomes, all answered right."""
        cases = [("/api/data", self.good, 200), ("/api/data", "opaque-resilience-unknown-03", 401),
                 ("/api/admin/x", self.good, 403), ("/api/admin/x", self.admin, 200),
                 ("/api/data", None, 401)]
        self.stack.secrets.add("opaque-resilience-unknown-03")
        errors = []

        def one_connection(c):
            plan = [cases[(c + i) % len(cases)] for i in range(10)]
            raw = b""
            for path, tok, _ in plan:
                raw += ("GET %s HTTP/1.1\r\nHost: test\r\n" % path).encode()
                if tok:
                    raw += ("Authorization: Bearer %s\r\n" % tok).encode()
                raw += b"\r\n"
            with socket.create_connection(("127.0.0.1", self.stack.haproxy_port), 20) as s:
                s.sendall(raw)
                f = s.makefile("rb")
                for path, tok, want in plan:
                    r = harness.read_response(f)
                    if r.status != want:
                        errors.append((c, path, want, r.status))

        threads = [threading.Thread(target=one_connection, args=(c,)) for c in range(20)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        self.assertEqual(errors, [])

    def test_z_agent_killed_fails_closed_then_recovers(self):
        self.assertEqual(self.stack.get(self.good).status, 200)
        before = self.stack.idp_calls()
        self.stack.kill_agent()
        t0 = time.monotonic()
        r = self.stack.get(self.good)
        self.assertFailedClosed(r)
        # HAProxy 2.6 keeps retrying the agent until "timeout processing" (3s) before the health
        # check has marked it DOWN; afterwards it answers at once.
        self.assertLess(time.monotonic() - t0, 5)
        # no token reached the IdP while the agent was down (nothing was forwarded either)
        harness.wait_until(lambda: self.stack.agent_server_stat()["status"] == "DOWN", 10,
                           "spop-check to mark the agent DOWN", 0.1)
        self.assertFailedClosed(self.stack.get(self.good))
        self.assertEqual(self.stack.idp_calls(), before)

        self.stack.start_agent()
        t0 = time.monotonic()
        harness.wait_until(lambda: self.stack.get(self.good).status == 200, 15,
                           "recovery after the agent restarted", 0.2)
        self.assertLess(time.monotonic() - t0, 10)
        self.stack.wait_agent_up()

    def test_z_garbage_peer_fails_closed(self):
        """The agent replaced by something that does not speak SPOP (a protocol error for
        HAProxy, while its health check still says UP): 503."""
        self.stack.wait_agent_up()
        self.stack.kill_agent()
        srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        srv.bind(("127.0.0.1", self.stack.agent_port))
        srv.listen(16)
        stop = threading.Event()
        spoe_hellos = []  # HAPROXY-HELLOs that were not health checks

        def answer_garbage():
            srv.settimeout(0.1)
            while not stop.is_set():
                try:
                    c, _ = srv.accept()
                except OSError:
                    continue
                with c:
                    c.settimeout(2)
                    try:
                        hello = c.recv(4096)
                        if b"healthcheck" not in hello:
                            spoe_hellos.append(hello)
                        c.sendall(b"HTTP/1.0 400 Bad Request\r\n\r\n")
                    except OSError:
                        pass

        t = threading.Thread(target=answer_garbage)
        t.start()
        try:
            self.assertFailedClosed(self.stack.get(self.good))
        finally:
            stop.set()
            t.join(5)
            srv.close()
        self.stack.start_agent()
        self.stack.wait_agent_up()
        self.assertEqual(self.stack.get(self.good).status, 200)
        # Informative: HAProxy really talked to the impostor unless a check marked it DOWN first.
        if not spoe_hellos:
            sys.stderr.write("(note: the health check marked the impostor DOWN first)\n")

    def test_z_hung_agent_times_out_503(self):
        """A stopped (hung) agent: the SPOE processing timeout (3s) answers 503."""
        self.stack.wait_agent_up()
        self.assertEqual(self.stack.get(self.good).status, 200)
        agent = self.stack.procs["agent"]
        os.kill(agent.pid, signal.SIGSTOP)
        try:
            t0 = time.monotonic()
            r = self.stack.get(self.good)
            elapsed = time.monotonic() - t0
        finally:
            os.kill(agent.pid, signal.SIGCONT)
        self.assertFailedClosed(r)
        self.assertGreater(elapsed, 2.5)
        self.assertLess(elapsed, 6)
        harness.wait_until(lambda: self.stack.get(self.good).status == 200, 15,
                           "recovery after SIGCONT", 0.2)


class NoAgentTest(harness.StackTestCase):
    """No agent at all, then something that does not speak SPOP: always 503, never forwarded."""

    STACK_ARGS = {"start_agent": False}

    def assertFailedClosed(self, r):
        self.assertEqual(r.status, 503, r)
        self.assertEqual(r.json(), SERVER_ERROR)  # ours, not the echo backend's answer

    def test_agent_never_started(self):
        self.stack.secrets.add("opaque-noagent-0001")
        for _ in range(2):
            self.assertFailedClosed(self.stack.get("opaque-noagent-0001"))
        self.assertFailedClosed(self.stack.get(None))
        self.assertEqual(self.stack.idp_calls(), 0)

if __name__ == "__main__":
    harness.run()
