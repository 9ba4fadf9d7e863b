#!/usr/bin/env python3
"""The shipped files under concurrent load, through the real HAProxy (run it with a 3.x binary:
tests/run-all.sh does, for every build it is given).

HAProxy 3.1 to 3.5-dev stall a pipelined SPOP connection once one read fills their receive buffer
(tune.bufsize) with ACKs; with a 2 KB JWT, 20 ACKs waiting on one connection exceed the shipped
tune.bufsize 32768 and requests then wait "timeout processing" and get 503. The shipped SPOE file
turns pipelining off on 3.1+, so none may fail: every request of a bounded load at 50 and at 200
concurrent connections must be answered 200, and HAProxy must log no SPOE error. What is asserted
is the answers, never a duration.

Late ACKs: a client that gives up while the agent still waits for the IdP. From 3.4 HAProxy
cancels that processing (with "option abortonclose"); the agent's ACK then arrives for a stream
HAProxy forgot. It must be harmless: the connection carries on, later requests are served."""

import os
import re
import socket

import harness

JWT_SIZE = 2000  # 20 ACKs of this size > 32768: stalls 3.x with pipelining on
SPOE_ERROR = re.compile(r"SPOE: \[[^\]]*\] <GROUP:phantom-auth> sid=\d+ st=([1-9]\d*)")


def spoe_errors(log):
    return [m.group(0) for m in SPOE_ERROR.finditer(log)]


class ConcurrentLoad(harness.StackTestCase):
    def test_c50_and_c200_all_answered(self):
        token = self.stack.register("load-token-large-jwt-0001", behaviour={"jwt_size": JWT_SIZE})
        self.assertEqual(self.stack.get(token).status, 200)
        headers = [("Authorization", "Bearer " + token)]
        for conns, total in ((50, 4000), (200, 4000)):
            with self.subTest(conns=conns):
                counts = harness.load(self.stack.haproxy_port, conns, total, headers)
                self.assertEqual(dict(counts), {200: total}, "at -c%d" % conns)
        errors = spoe_errors(self.stack.log("haproxy"))
        self.assertEqual(errors[:3], [], "%d SPOE errors in HAProxy's log" % len(errors))
        self.assertEqual(self.stack.idp_calls(token), 1)  # cached: the IdP saw it once
        self.assertNotIn("offers pipelining", self.stack.log("agent"))


class PipeliningWarning(harness.unittest.TestCase):
    """An SPOE file that leaves pipelining on: the agent warns on 3.1+ (the HELLO offers
    "pipelining" without 2.x's "async"), never on 2.6."""

    def test_warning_only_for_a_pipelining_haproxy_3(self):
        harness.require_binaries()
        stack = harness.Stack()
        with open(harness.SPOE_CONF) as f:
            spoe, n = re.subn(r"^\.if version_atleast\(3\.1\)\n    no option pipelining\n\.endif\n",
                              "", f.read(), flags=re.M)
        self.assertEqual(n, 1)
        path = os.path.join(stack.tmpdir, "spoe-pipelining.conf")
        with open(path, "w") as f:
            f.write(spoe)
        stack.haproxy_env["PHANTOM_SPOE_CONF"] = path
        stack.start()
        try:
            token = stack.register("pipelining-warning-token-1")
            self.assertEqual(stack.get(token).status, 200)
            warned = "HAProxy 3.x offers pipelining with tune.bufsize 32768" in stack.log("agent")
            self.assertEqual(warned, harness.haproxy_version_tuple() >= (3, 1))
        finally:
            stack.stop()


def cfg_variant(tmpdir, name, pattern, replacement):
    """A copy of the shipped haproxy.cfg with one line changed (the pattern must match once)."""
    with open(harness.HAPROXY_CFG) as f:
        text = f.read()
    text, n = re.subn(pattern, replacement, text, flags=re.M)
    assert n == 1, "%r not found once in the shipped cfg" % pattern
    path = os.path.join(tmpdir, name)
    with open(path, "w") as f:
        f.write(text)
    return path


def abortonclose_cfg(tmpdir):
    """The shipped haproxy.cfg with "option abortonclose" in its defaults section."""
    return cfg_variant(tmpdir, "haproxy-abortonclose.cfg", r"^defaults\n",
                       "defaults\n    option abortonclose\n")


class LateAcks(harness.unittest.TestCase):
    """Clients abort while the agent waits for a slow IdP; the ACKs come after HAProxy gave up."""

    def run_aborts(self, stack, expect_cancel=False):
        slow = stack.register("late-ack-slow-token-0001", behaviour={"delay_ms": 700})
        fast = stack.register("late-ack-fast-token-0002")
        socks = []
        for _ in range(10):
            s = socket.create_connection(("127.0.0.1", stack.haproxy_port), 5)
            s.sendall(("GET /api/data HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n\r\n"
                       % slow).encode())
            socks.append(s)
        # Every request reached the agent (single flight: one IdP call), then the clients leave.
        harness.wait_until(lambda: stack.idp_calls(slow) == 1, 10, "the slow introspection")
        for s in socks:
            s.close()
        # The IdP answers, the agent ACKs streams HAProxy may have cancelled; then more traffic
        # on the same agent connections.
        harness.wait_until(lambda: stack.get(slow).status == 200, 10, "the slow token cached")
        counts = harness.load(stack.haproxy_port, 20, 400, [("Authorization", "Bearer " + fast)])
        self.assertEqual(dict(counts), {200: 400})
        log = stack.log("agent")
        self.assertNotRegex(log, r"(?i)protocol error|bad frame|disconnect.*status [1-9]")
        self.assertTrue(stack.procs["agent"].alive())
        haproxy_log = stack.log("haproxy")
        self.assertEqual(spoe_errors(haproxy_log), [])
        if expect_cancel:
            # HAProxy gave up on the aborted requests (logged 503 with no server) before the
            # agent answered: the ACKs above were late ones, for streams it had forgotten.
            self.assertRegex(haproxy_log, r"<NOSRV> .* 503 .*\"GET /api/data HTTP/1\.1\"")

    def test_late_acks_shipped_cfg(self):
        stack = harness.Stack().start()
        try:
            self.run_aborts(stack)
        finally:
            stack.stop()

    def test_late_acks_with_abortonclose(self):
        stack = harness.Stack()
        stack.haproxy_cfg = abortonclose_cfg(stack.tmpdir)
        stack.start()
        try:
            # 3.4 cancels the processing on a client abort (3.1+ with the fix backported).
            self.run_aborts(stack, expect_cancel=harness.haproxy_version_tuple() >= (3, 4))
        finally:
            stack.stop()


if __name__ == "__main__":
    harness.run()
