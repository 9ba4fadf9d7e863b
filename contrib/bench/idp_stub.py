#!/usr/bin/python3
"""A fast RFC 7662 introspection stub for the benchmarks (standard library only).

tests/servers/idp.py is a thread-per-connection server that builds a fresh JWT (with os.urandom)
for every call: fine for tests, but on the miss-path row of the benchmark it would measure itself.
This stub is one asyncio loop with HTTP/1.1 keep-alive, and answers from a precomputed JWT, so the
agent and HAProxy stay the bottleneck. It counts every introspection call.

POST /introspect (form: token=...):
  - a registered token, or any token while "all_active" is on -> 200 application/jwt (a
    well-formed, unsigned JWT with exp one hour ahead);
  - anything else -> 200 application/json {"active": false}.
  Client authentication is not checked.

Control API (JSON):
  POST /_control/tokens  {"token": "..."} or {"tokens": ["...", ...]} (bulk) registers tokens
  POST /_control/mode    {"delay_ms": 200, "all_active": true}; {} clears both
  POST /_control/reset   forgets tokens, mode and counters
  GET  /_control/stats   {"calls": N, "tokens": N, "max_in_flight": N, "in_flight": N}

--port 0 picks a free port and prints "READY <port>" on stdout.
"""

import argparse
import asyncio
import base64
import json
import sys
import time
import urllib.parse


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def make_jwt(size):
    header = {"alg": "RS256", "kid": "bench", "typ": "JWT"}
    now = int(time.time())
    payload = {"iss": "https://idp.example.test", "aud": "api.example.test", "sub": "bench-user",
               "client_id": "bench-client", "scope": "openid read", "exp": now + 3600,
               "iat": now, "jti": "bench"}
    sig = b64url(bytes(range(256)))

    def build(p):
        return ".".join([b64url(json.dumps(header, separators=(",", ":")).encode()),
                         b64url(json.dumps(p, separators=(",", ":")).encode()), sig])

    jwt = build(payload)
    if size > len(jwt):
        payload["pad"] = "x" * ((size - len(jwt) - 10) * 3 // 4)
        jwt = build(payload)
        while len(jwt) > size and payload["pad"]:
            payload["pad"] = payload["pad"][:-1]
            jwt = build(payload)
    return jwt.encode("ascii")


async def read_chunked(reader):
    """A chunked request body (trailers ignored)."""
    body = b""
    while True:
        size = int((await reader.readuntil(b"\r\n")).split(b";")[0].strip(), 16)
        if size == 0:
            while (await reader.readuntil(b"\r\n")) != b"\r\n":
                pass
            return body
        body += await reader.readexactly(size)
        await reader.readexactly(2)


def response(status, ctype, body):
    reason = {200: "OK", 400: "Bad Request", 404: "Not Found"}.get(status, "OK")
    head = ("HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %d\r\n\r\n"
            % (status, reason, ctype, len(body))).encode("ascii")
    return head + body


class Stub:
    def __init__(self, jwt_size):
        self.jwt = make_jwt(jwt_size)
        self.active = response(200, "application/jwt", self.jwt)
        self.inactive = response(200, "application/json", b'{"active":false}')
        self.ok = response(200, "application/json", b'{"ok":true}')
        self.reset()

    def reset(self):
        self.tokens = set()
        self.delay = 0.0
        self.all_active = False
        self.calls = 0
        self.in_flight = 0
        self.max_in_flight = 0

    async def introspect(self, body):
        self.calls += 1
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if self.delay:
                await asyncio.sleep(self.delay)
            token = None
            for part in body.split(b"&"):
                if part.startswith(b"token="):
                    token = urllib.parse.unquote_plus(part[6:].decode("latin-1"))
                    break
            if token is None:
                return response(400, "application/json", b'{"error":"invalid_request"}')
            if self.all_active or token in self.tokens:
                return self.active
            return self.inactive
        finally:
            self.in_flight -= 1

    def control(self, method, path, body):
        if method == "GET" and path == "/_control/stats":
            doc = {"calls": self.calls, "tokens": len(self.tokens),
                   "in_flight": self.in_flight, "max_in_flight": self.max_in_flight}
            return response(200, "application/json", json.dumps(doc).encode())
        if method != "POST":
            return None
        doc = json.loads(body or b"{}")
        if path == "/_control/tokens":
            if "token" in doc:
                self.tokens.add(doc["token"])
            self.tokens.update(doc.get("tokens") or [])
        elif path == "/_control/mode":
            self.delay = float(doc.get("delay_ms") or 0) / 1000.0
            self.all_active = bool(doc.get("all_active"))
        elif path == "/_control/reset":
            self.reset()
        else:
            return None
        return self.ok

    async def handle(self, reader, writer):  # noqa: C901 (one HTTP/1.1 loop)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.split(b"\r\n")
                method, target, _ = lines[0].decode("latin-1").split(" ", 2)
                length = 0
                close = chunked = False
                for line in lines[1:]:
                    name, _, value = line.partition(b":")
                    name = name.strip().lower()
                    if name == b"content-length":
                        length = int(value.strip())
                    elif name == b"transfer-encoding" and b"chunked" in value.lower():
                        chunked = True  # HAProxy's Lua httpclient (the Lua peer) sends chunks
                    elif name == b"connection" and value.strip().lower() == b"close":
                        close = True
                    elif name == b"expect" and value.strip().lower() == b"100-continue":
                        writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
                if chunked:
                    body = await read_chunked(reader)
                else:
                    body = await reader.readexactly(length) if length else b""
                path = urllib.parse.urlsplit(target).path
                if method == "POST" and path == "/introspect":
                    out = await self.introspect(body)
                else:
                    try:
                        out = self.control(method, path, body)
                    except (ValueError, TypeError, AttributeError) as e:
                        out = response(400, "application/json",
                                       json.dumps({"error": str(e)}).encode())
                    if out is None:
                        out = response(404, "application/json", b'{"error":"not_found"}')
                writer.write(out)
                if close:
                    break
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError,
                ValueError):
            pass
        finally:
            try:
                writer.close()
            except Exception:  # noqa: BLE001 (already gone)
                pass


async def serve(args):
    stub = Stub(args.jwt_size)
    srv = await asyncio.start_server(stub.handle, args.host, args.port, backlog=1024,
                                     limit=1 << 20)
    port = srv.sockets[0].getsockname()[1]
    print("READY %d" % port, flush=True)
    async with srv:
        await srv.serve_forever()


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--jwt-size", type=int, default=900, help="bytes of the JWT answered")
    args = p.parse_args(argv)
    try:
        asyncio.run(serve(args))
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
