#!/usr/bin/python3
"""The protected API for tests and the demo: answers every request with what it received.

200 application/json {"method", "path", "headers": [[name, value], ...] (received order and
spelling), "body_length"}. HTTP/1.1 keep-alive. --port 0 picks a free port and prints
"READY <port>" on stdout. Standard library only.
"""

import argparse
import json
import sys
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

    def _echo(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length > 0 else b""
        doc = {
            "method": self.command,
            "path": self.path,
            # email.message keeps the raw names and the order of the header block.
            "headers": [[k, v] for k, v in self.headers.raw_items()],
            "body_length": len(body),
        }
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
    return serve(srv)


if __name__ == "__main__":
    sys.exit(main())
