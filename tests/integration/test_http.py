#!/usr/bin/python3
"""The agent's HTTP server, through the real binary: /metrics and /healthz as before; 404, 405
with Allow and 413 as JSON; the admin API absent without admin-token-file, 401 with
WWW-Authenticate without the right bearer token, the token rotated by SIGHUP, a loose token file
refused at start, and the admin unix socket (mode 0600) that needs no token."""

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402


class UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path):
        super().__init__("localhost", timeout=10)
        self.path = path

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(10)
        self.sock.connect(self.path)


def unix_get(path, url):
    conn = UnixHTTPConnection(path)
    try:
        conn.request("GET", url)
        r = conn.getresponse()
        return r.status, r.read()
    finally:
        conn.close()


class AgentHTTP(unittest.TestCase):
    EXTRA = []

    def setUp(self):
        harness.require_binaries()
        self.tmp = tempfile.mkdtemp(prefix="pta-http-")
        self.port = harness.free_port()
        self.http_port = harness.free_port()
        self.agent = None

    def tearDown(self):
        if self.agent:
            self.assertEqual(self.agent.stop(), 0, self.agent.log_text()[-2000:])
        harness.shutil.rmtree(self.tmp, ignore_errors=True)

    def argv(self, *extra):
        return [harness.AGENT, "--listen", "127.0.0.1:%d" % self.port, "--http-listen",
                "127.0.0.1:%d" % self.http_port] + list(extra)

    def start(self, *extra, ready=None):
        self.agent = harness.Proc("agent", self.argv(*extra), self.tmp)
        harness.wait_until(lambda: self.agent.check_alive() and
                           harness.port_open(self.http_port) and (ready is None or ready()),
                           10, "the agent's HTTP listener")

    def req(self, method, path, headers=(), body=None):
        return harness.http_request(self.http_port, method, path, headers=headers, body=body)

    def token_file(self, token, mode=0o600):
        path = os.path.join(self.tmp, "admin-token")
        with open(path, "w") as f:
            f.write(token + "\n")
        os.chmod(path, mode)
        return path

    def assertJSONError(self, r, status, message):
        self.assertEqual(r.status, status, r)
        self.assertEqual(r.header("Content-Type"), "application/json")
        self.assertEqual(r.json(), {"error": message})


class PublicRoutes(AgentHTTP):
    def test_public_routes_and_errors(self):
        self.start()
        r = self.req("GET", "/metrics")
        self.assertEqual(r.status, 200)
        self.assertEqual(r.header("Content-Type"), "text/plain; version=0.0.4; charset=utf-8")
        self.assertIn("phantom_decisions_total", r.body.decode())
        r = self.req("GET", "/healthz")
        self.assertEqual((r.status, r.body), (200, b"ok\n"))
        self.assertEqual(r.header("Content-Type"), "text/plain; charset=utf-8")
        r = self.req("HEAD", "/healthz")
        self.assertEqual((r.status, r.body), (200, b""))

        r = self.req("POST", "/metrics", body=b"")
        self.assertJSONError(r, 405, "method not allowed")
        self.assertEqual(r.header("Allow"), "GET, HEAD")
        self.assertJSONError(self.req("GET", "/nope"), 404, "not found")
        self.assertJSONError(self.req("GET", "/healthz", body=b"x" * 10), 413,
                             "request body too large")
        # no admin-token-file: the admin API does not exist on http-listen
        self.assertJSONError(self.req("GET", "/admin/status"), 404, "not found")
        self.assertJSONError(self.req("GET", "/admin/status",
                                      headers=[("Authorization", "Bearer x")]), 404, "not found")


class AdminToken(AgentHTTP):
    def test_bearer_token_and_rotation(self):
        path = self.token_file("first-admin-token")
        self.start("--admin-token-file", path)
        r = self.req("GET", "/admin/status")
        self.assertJSONError(r, 401, "admin token required")
        self.assertEqual(r.header("WWW-Authenticate"), 'Bearer realm="phantom-token-agent admin"')
        r = self.req("GET", "/admin/status", headers=[("Authorization", "Bearer first-admin-toke")])
        self.assertJSONError(r, 401, "invalid admin token")
        self.assertIn('error="invalid_token"', r.header("WWW-Authenticate"))
        r = self.req("GET", "/admin/status", headers=[("Authorization", "Bearer first-admin-token")])
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.header("Content-Type"), "application/json")
        doc = r.json()
        self.assertEqual(doc["draining"], False)
        self.assertEqual(doc["cache_entries"], 0)
        self.assertRegex(doc["version"], r"^\d+\.\d+\.\d+")
        r = self.req("DELETE", "/admin/status", headers=[("Authorization", "Bearer x")])
        self.assertJSONError(r, 405, "method not allowed")

        self.token_file("second-admin-token")
        before = self.agent.log_text().count("configuration reloaded")
        os.kill(self.agent.pid, signal.SIGHUP)
        harness.wait_until(lambda: self.agent.log_text().count("configuration reloaded") > before,
                           10, "the reload")
        old = self.req("GET", "/admin/status", headers=[("Authorization", "Bearer first-admin-token")])
        self.assertEqual(old.status, 401)
        new = self.req("GET", "/admin/status", headers=[("Authorization", "Bearer second-admin-token")])
        self.assertEqual(new.status, 200)
        log = self.agent.log_text()
        self.assertNotIn("first-admin-token", log)
        self.assertNotIn("second-admin-token", log)

    def test_loose_token_file_is_refused(self):
        path = self.token_file("loose-admin-token", 0o644)
        for extra in (["--check-config"], []):
            p = subprocess.run(self.argv("--admin-token-file", path, *extra), capture_output=True,
                               text=True, timeout=10)
            self.assertEqual(p.returncode, 2, p)
            self.assertIn("admin token file '%s' is accessible to other users" % path, p.stderr)


class AdminSocket(AgentHTTP):
    def test_unix_socket_serves_admin_routes_only(self):
        sock = os.path.join(self.tmp, "admin.sock")
        self.start("--admin-listen", "unix:" + sock, ready=lambda: os.path.exists(sock))
        self.assertEqual(os.stat(sock).st_mode & 0o777, 0o600)
        status, body = unix_get(sock, "/admin/status")
        self.assertEqual(status, 200, body)
        self.assertEqual(json.loads(body)["spop_connections"], 0)
        self.assertEqual(unix_get(sock, "/metrics")[0], 404)
        # no token file: still absent on http-listen
        self.assertEqual(self.req("GET", "/admin/status").status, 404)
        self.assertEqual(self.agent.stop(), 0)
        self.agent = None
        self.assertFalse(os.path.exists(sock), "the admin socket was left behind")


if __name__ == "__main__":
    harness.run()
