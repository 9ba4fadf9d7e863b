#!/usr/bin/python3
"""The agent's listening addresses: a unix socket and IPv6 loopback, spoken to directly, and a
unix socket used by the real HAProxy through the shipped haproxy.cfg (PHANTOM_AGENT=/path)."""

import os
import resource
import socket
import subprocess
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
import test_spop_protocol as spop  # noqa: E402


def ipv6_loopback():
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


class Direct(unittest.TestCase):
    def setUp(self):
        harness.require_binaries()
        self.tmp = tempfile.mkdtemp(prefix="pta-listen-")
        self.agent = None

    def tearDown(self):
        if self.agent:
            self.assertEqual(self.agent.stop(), 0, self.agent.log_text()[-2000:])
        harness.shutil.rmtree(self.tmp, ignore_errors=True)

    def start(self, listen, ready):
        self.agent = harness.Proc("agent", [harness.AGENT, "--listen", listen, "--log-level",
                                            "debug"], self.tmp)
        harness.wait_until(lambda: self.agent.check_alive() and ready(), 10, "agent on " + listen)

    def assert_answers(self, sock):
        c = spop.Conn(0, sock=sock)
        _, kv = c.hello()
        self.assertEqual(kv["version"].value, "2.0")
        c.send(spop.notify_frame(3, 4))
        f = c.recv_frame()
        self.assertEqual((f.type, f.sid, f.fid), (spop.ACK, 3, 4))
        status = [a.value.value for a in spop.parse_actions(f.payload) if a.name == "status"]
        self.assertEqual(status, [401])
        c.close()

    def test_unix_socket(self):
        path = os.path.join(self.tmp, "agent.sock")
        self.start("unix:" + path, lambda: os.path.exists(path))
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(5)
        s.connect(path)
        self.assert_answers(s)
        self.assertEqual(self.agent.stop(), 0)
        self.assertFalse(os.path.exists(path), "the socket file outlived the agent")
        self.agent = None

    @unittest.skipUnless(ipv6_loopback(), "no IPv6 loopback on this machine")
    def test_ipv6_loopback(self):
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as probe:
            probe.bind(("::1", 0))
            port = probe.getsockname()[1]

        def listening():
            try:
                socket.create_connection(("::1", port), timeout=0.5).close()
                return True
            except OSError:
                return False
        self.start("[::1]:%d" % port, listening)
        self.assert_answers(socket.create_connection(("::1", port), timeout=5))


class OutOfDescriptors(unittest.TestCase):
    """When accept() fails for lack of descriptors, the agent waits instead of spinning (the
    listening socket stays readable: retrying at once would burn a core and flood the log), and
    serves again once descriptors are free."""

    def test_emfile_neither_spins_nor_floods(self):
        harness.require_binaries()
        tmp = tempfile.mkdtemp(prefix="pta-emfile-")
        self.addCleanup(harness.shutil.rmtree, tmp, True)
        port = harness.free_port()
        log = open(os.path.join(tmp, "agent.log"), "w+")
        self.addCleanup(log.close)
        agent = subprocess.Popen(
            [harness.AGENT, "--listen", "127.0.0.1:%d" % port, "--log-level", "warn"],
            stdout=log, stderr=subprocess.STDOUT,
            preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (32, 32)))
        self.addCleanup(lambda: agent.poll() is None and agent.kill())
        harness.wait_until(lambda: harness.port_open(port), 10, "agent listening")
        socks = []
        for _ in range(60):  # well past 32 descriptors: the rest wait in the backlog
            socks.append(socket.create_connection(("127.0.0.1", port), timeout=2))
        harness.wait_until(lambda: "pausing new SPOP connections" in open(log.name).read(), 5,
                           "the agent to run out of descriptors")

        def cpu():
            f = open("/proc/%d/stat" % agent.pid).read().rsplit(")", 1)[1].split()
            return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")
        c0, t0 = cpu(), time.monotonic()
        time.sleep(1.0)  # measuring a rate: a fixed window is the point here
        busy = (cpu() - c0) / (time.monotonic() - t0)
        lines = open(log.name).read().count("\n")
        self.assertLess(busy, 0.5, "the agent spins on accept()")
        self.assertLess(lines, 200, "the agent floods its log")
        for s in socks:
            s.close()
        c = spop.Conn(port)  # descriptors are free again: it serves
        _, kv = c.hello()
        self.assertEqual(kv["version"].value, "2.0")
        c.close()
        agent.terminate()
        self.assertEqual(agent.wait(10), 0)


class ThroughHAProxyOverUnixSocket(unittest.TestCase):
    """The shipped haproxy.cfg with PHANTOM_AGENT pointing at the agent's unix socket."""

    def setUp(self):
        self.sock_dir = tempfile.mkdtemp(prefix="pta-usock-")
        self.path = os.path.join(self.sock_dir, "agent.sock")
        self.stack = harness.Stack(start_agent=False, haproxy_env={"PHANTOM_AGENT": self.path})
        self.stack.start()

    def tearDown(self):
        self.stack.stop()
        harness.shutil.rmtree(self.sock_dir, ignore_errors=True)

    def test_token_exchanged_over_unix_socket(self):
        s = self.stack
        argv = s.agent_argv() + ["--listen", "unix:" + self.path]  # the last --listen wins
        agent = harness.Proc("agent", argv, s.tmpdir)
        s.procs["agent"] = agent
        harness.wait_until(lambda: agent.check_alive() and os.path.exists(self.path), 10,
                           "agent socket")
        s.wait_agent_up()
        tok = s.register("unix-socket-token-0001")
        r = s.get(tok)
        self.assertEqual(r.status, 200, r)
        self.assertEqual(s.idp_calls(tok), 1)
        self.assertEqual(s.get().status, 401)


if __name__ == "__main__":
    harness.run()
