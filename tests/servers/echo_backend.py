#!/usr/bin/python3
"""The protected API for tests and the demo: answers every request with what it received.

200 application/json {"method", "path", "headers": [[name, value], ...] (received order and
spelling), "body_length"}. HTTP/1.1 keep-alive. --port 0 picks a free port and prints
"READY <port>" on stdout. Standard library only.

It also counts what it received, for tests that must prove nothing reached the API without a
valid credential (HAProxy only forwards /api paths, so these never collide with the API):
  GET  /_control/received  {"requests": N, "authorization": {key: n}}, key: the SHA-256 (hex) of
                           the credential of "Bearer <credential>", "raw:<sha256 of the value>"
                           for any other value, "" for a request without Authorization
  POST /_control/reset     forgets the counts
"""

import argparse
import hashlib
import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from serve import serve


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "echo-backend/1"
    # Headers and body are written separately: without TCP_NODELAY, Nagle + delayed ACK add
    # 40 ms to every answer on loopback.
    disable_nagle_algorithm = True

    def log_message(self, fmt, *args):  # noqa: N802 (stdlib name)
        if self.server.verbose:
            sys.stderr.write("echo: %s\n" % (fmt % args))

    def _control(self):
        srv = self.server
        with srv.lock:
            if self.command == "POST" and self.path == "/_control/reset":
                srv.received = {}
                srv.requests = 0
            doc = {"requests": srv.requests, "authorization": dict(srv.received)}
        return doc

    def _count(self):
        """Every Authorization value, hashed (it is a credential); see the module docstring."""
        keys = [self._auth_key(v) for v in self.headers.get_all("Authorization") or [""]]
        with self.server.lock:
            self.server.requests += 1
            for key in keys:
                self.server.received[key] = self.server.received.get(key, 0) + 1

    @staticmethod
    def _auth_key(value):
        if not value:
            return ""
        if value.startswith("Bearer "):
            return hashlib.sha256(value[7:].encode("latin-1")).hexdigest()
        return "raw:" + hashlib.sha256(value.encode("latin-1")).hexdigest()

    def _echo(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length > 0 else b""
        if self.path.startswith("/_control/"):
            self._reply(self._control())
            return
        self._count()
        doc = {
            "method": self.command,
            "path": self.path,
            # email.message keeps the raw names and the order of the header block.
            "headers": [[k, v] for k, v in self.headers.raw_items()],
            "body_length": len(body),
        }
        self._reply(doc)

    def _reply(self, doc):
        out = json.dumps(doc).encode("utf-8")
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(out)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _echo  # noqa: N815


class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256
    allow_reuse_address = True


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--verbose", action="store_true")
    args = p.parse_args(argv)
    srv = Server((args.host, args.port), Handler)
    srv.verbose = args.verbose
    srv.lock = threading.Lock()
    srv.received = {}
    srv.requests = 0
    return serve(srv)


if __name__ == "__main__":
    sys.exit(main())
