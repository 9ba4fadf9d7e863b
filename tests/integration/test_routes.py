#!/usr/bin/python3
"""Route hardening in the shipped haproxy.cfg: the scoped route cannot be reached by spelling its
path another way (percent-encoding, case, extra or dot segments, ";params", suffixes, absolute
URIs), OPTIONS skips the agent only for a real CORS preflight, an empty required-scope list is
refused at start-up, and HAProxy's own errors answer in JSON."""

import os
import socket
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

SCOPED_VARIANTS = [
    "/api/admin", "/api/admin/users", "/api/%61dmin/users", "/api/Admin/users", "/api/ADMIN",
    "/api//admin/users", "/api/./admin/users", "/api/x/../admin/users", "/api/admin%2fusers",
    "/api/admin%2Fusers", "/api/admin;x=1/users", "/api/admin\\users", "/api/admin.json",
    "/api/admin/", "/api/%2e/admin",
]


def raw_request(port, request_line, headers):
    """Sends a request line as is (absolute URIs, odd paths http.client would refuse)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        lines = [request_line, "Host: 127.0.0.1:%d" % port, "Connection: close"]
        lines += ["%s: %s" % h for h in headers]
        s.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    return int(data.split(b" ", 2)[1]), data


class Routes(harness.StackTestCase):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.reader = cls.stack.register("routes-reader-token-0001", scope="openid read")
        cls.admin = cls.stack.register("routes-admin-token-0002", scope="openid admin")

    def status(self, path, token, method="GET", extra=()):
        status, _ = raw_request(self.stack.haproxy_port, "%s %s HTTP/1.1" % (method, path),
                                [("Authorization", "Bearer " + token)] + list(extra))
        return status

    def test_scoped_route_cannot_be_reached_by_another_spelling(self):
        for path in SCOPED_VARIANTS:
            with self.subTest(path=path):
                self.assertIn(self.status(path, self.reader), (400, 403), path)

    def test_absolute_uri_is_the_same_route(self):
        base = "http://127.0.0.1:%d" % self.stack.haproxy_port  # the authority must match Host
        self.assertIn(self.status(base + "/api//admin/users", self.reader), (400, 403))
        self.assertEqual(self.status(base + "/api/admin/users", self.reader), 403)
        self.assertEqual(self.status(base + "/api/admin/users", self.admin), 200)

    def test_the_scope_opens_every_spelling_that_is_not_ambiguous(self):
        for path in ("/api/admin/users", "/api/Admin/users", "/api/%61dmin", "/api/admin.json",
                     "/api/admin;v=2"):
            with self.subTest(path=path):
                self.assertEqual(self.status(path, self.admin), 200)

    def test_neighbouring_paths_are_not_scoped(self):
        for path in ("/api/administrators", "/api/data", "/api/adminx/1"):
            with self.subTest(path=path):
                self.assertEqual(self.status(path, self.reader), 200)

    def test_ambiguous_paths_are_refused_in_json(self):
        for path in ("/api//data", "/api/./data", "/api/a/../data", "/api/a%2fb", "/api/a\\b"):
            with self.subTest(path=path):
                status, data = raw_request(self.stack.haproxy_port, "GET %s HTTP/1.1" % path,
                                           [("Authorization", "Bearer " + self.admin)])
                self.assertEqual(status, 400, data)
                self.assertIn(b"application/json", data)

    def test_options_needs_a_token_unless_it_is_a_real_preflight(self):
        before = self.stack.idp_calls()
        preflight = [("Origin", "https://app.example"), ("Access-Control-Request-Method", "GET")]
        # No preflight headers, or a body: not a preflight, so the agent is asked.
        r = self.stack.request("/api/admin/users", method="OPTIONS")
        self.assertEqual(r.status, 401, r)
        r = self.stack.request("/api/data", method="OPTIONS", headers=preflight, body=b"x=1")
        self.assertEqual(r.status, 401, r)
        r = self.stack.request("/api/data", method="OPTIONS", headers=preflight[:1])
        self.assertEqual(r.status, 401, r)
        # A real preflight still goes through without the agent.
        r = self.stack.request("/api/data", method="OPTIONS", headers=preflight)
        self.assertEqual(r.status, 200, r)
        self.assertEqual(self.stack.idp_calls(), before)

    def test_a_trailing_comma_is_one_header_not_two(self):
        r = self.stack.request(headers=[("Authorization", "Bearer abc,")])
        self.assertEqual(r.status, 400, r)
        self.assertIn("Malformed", r.header("WWW-Authenticate"))

    def test_haproxy_errors_are_json(self):
        big = self.stack.register("routes-big-jwt-token-0003", behaviour={"jwt_size": 6000})
        headers = [("X-Filler-%02d" % i, "f" * 1000) for i in range(28)]
        r = self.stack.get(big, extra=headers)  # fits before the rewrite, not after
        self.assertEqual(r.status, 500, r)
        self.assertEqual(r.header("Content-Type"), "application/json")
        self.assertEqual(r.json()["code"], "server_error")


class StartupChecks(harness.unittest.TestCase):
    def test_empty_required_scopes_refuses_to_start(self):
        harness.require_binaries()
        env = dict(os.environ, PHANTOM_REQUIRED_SCOPES="", PHANTOM_SPOE_CONF=harness.SPOE_CONF)
        p = subprocess.run([harness.HAPROXY, "-c", "-f", harness.HAPROXY_CFG], env=env,
                           capture_output=True, text=True, timeout=30)
        self.assertNotEqual(p.returncode, 0, p.stdout + p.stderr)
        self.assertIn("PHANTOM_REQUIRED_SCOPES is empty", p.stdout + p.stderr)


if __name__ == "__main__":
    harness.run()
