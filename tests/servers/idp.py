#!/usr/bin/python3
"""A controllable RFC 7662 token introspection server for tests, the demo and benchmarks.

POST /introspect (form: token=...) answers like a Phantom Token identity server:
  - registered, unexpired token -> 200 application/jwt, an unsigned but well-formed JWT;
    with "Accept: application/json" (or the token's behaviour "keycloak": true) Keycloak-style
    JSON instead: {"active": true, <claims>, "jwt": "<JWT>"};
  - anything else -> 200 application/json {"active": false}.
Client authentication (when --client-id is given): client_secret_basic (RFC 6749 2.3.1: id and
secret form-urlencoded, then base64) or client_secret_post; wrong or missing -> 401.

Control API (JSON, loopback clients only), so tests can script the server:
  POST /_control/tokens  {"token", "sub", "scope", "client_id", "exp_in", "claims", "behaviour"},
                         or {"tokens": [spec, ...]} to register many at once
       behaviour: status, content_type, body, headers ({name: value}), delay_ms, jwt_size,
                  cache_control, keycloak, and the fault modes:
         blackhole: true      read the request, never answer (until the peer closes, a reset of
                              the mode, or 120 s)
         reset: "before"      TCP RST before any response byte
         reset: "mid_body"    headers and half the announced body, then a TCP RST
         garbage: "body"      200 application/jwt whose body is random bytes
         garbage: "wire"      random bytes instead of an HTTP response, then close
         huge_body: N         200 application/jwt announcing and streaming N bytes
         flap: {"period_ms": P, "down": {behaviour}}   alternates every P ms between answering
                              normally and the "down" behaviour (wall clock, so every caller sees
                              the same phase)
         once: true           the status and fault modes apply to a token's first call only
                              (what a retry should get through)
  POST /_control/reset   forget tokens (demo tokens come back), counters, mode
  GET  /_control/stats   {"calls", "per_token": {sha256-prefix: n}, "max_concurrent", "in_flight",
                          "issued", "faults": {mode: n}}
  GET  /_control/issued  {"sha256": [...]}: the SHA-256 (hex) of every JWT this server issued
                         since the last reset, so a test can check that what reached the API is
                         a JWT from here
  POST /_control/mode    a behaviour applied to every introspection ({"status": 500},
                         {"delay_ms": 3000}, {"blackhole": true}); {} clears it (and releases
                         blackholed connections)

Tokens never appear in the logs (only a 12-hex-digit SHA-256 prefix), except in --demo's banner.
Standard library only.
"""

import argparse
import base64
import hashlib
import ipaddress
import json
import os
import select
import socket
import ssl
import struct
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from serve import serve

ISSUER = "https://idp.example.test"
AUDIENCE = "api.example.test"
DEFAULT_CLIENT_ID = "api-client"

# Fixed so that the demo script and users can paste them; only registered with --demo.
DEMO_TOKENS = {
    "demo-7e1f2a9c4b8d43f0a6c5e2d1b0f9a8c7": {
        "sub": "alice", "scope": "openid read", "claims": {"name": "Alice Example"}},
    "demo-admin-3c9b5d7e1f2a4b6c8d0e1f2a3b4c5d6e": {
        "sub": "bob", "scope": "openid read admin", "claims": {"name": "Bob Admin"}},
}


def token_id(token):
    """What identifies a token in logs and stats: the same 12-hex prefix the agent logs."""
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).hexdigest()[:12]


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


class State:
    """Everything the control API changes; one lock guards it all (the server is threaded)."""

    def __init__(self, demo):
        self.lock = threading.Lock()
        self.demo = demo
        self.reset()

    def reset(self):
        with self.lock:
            self.tokens = {}
            self.mode = {}
            self.calls = 0
            self.per_token = {}
            self.in_flight = 0
            self.max_concurrent = 0
            self.issued = set()  # sha256 hex of every JWT sent
            self.faults = {}     # fault mode -> times applied
            self._release_blackholes()
            if self.demo:
                for tok, spec in DEMO_TOKENS.items():
                    self.tokens[tok] = self._entry(dict(spec, exp_in=3600))

    @staticmethod
    def _entry(spec):
        now = int(time.time())
        return {
            "sub": spec.get("sub", "user"),
            "scope": spec.get("scope", "openid"),
            "client_id": spec.get("client_id", "web-client"),
            "exp": now + int(spec.get("exp_in", 300)),
            "iat": now,
            "claims": dict(spec.get("claims") or {}),
            "behaviour": dict(spec.get("behaviour") or {}),
        }

    def _release_blackholes(self):
        """Blackholed handlers wait on this event; a new mode or a reset lets them go."""
        old = getattr(self, "release", None)
        self.release = threading.Event()
        if old is not None:
            old.set()

    def set_mode(self, mode):
        with self.lock:
            self.mode = dict(mode)
            self._release_blackholes()

    def register(self, spec):
        specs = spec["tokens"] if "tokens" in spec else [spec]
        if not isinstance(specs, list):
            raise ValueError("tokens must be a list")
        entries = {}
        for one in specs:
            token = one["token"]
            if not isinstance(token, str) or not token:
                raise ValueError("token must be a non-empty string")
            entries[token] = self._entry(one)
        with self.lock:
            self.tokens.update(entries)

    def issue(self, jwt):
        with self.lock:
            self.issued.add(hashlib.sha256(jwt.encode("ascii")).hexdigest())

    def count_fault(self, name):
        with self.lock:
            self.faults[name] = self.faults.get(name, 0) + 1

    def issued_list(self):
        with self.lock:
            return sorted(self.issued)

    def begin_call(self, token):
        """(the token's entry, the global mode, how many times this token was asked, this included)"""
        with self.lock:
            self.calls += 1
            nth = 0
            if token is not None:
                tid = token_id(token)
                nth = self.per_token[tid] = self.per_token.get(tid, 0) + 1
            self.in_flight += 1
            self.max_concurrent = max(self.max_concurrent, self.in_flight)
            entry = self.tokens.get(token) if token is not None else None
            return (dict(entry) if entry else None), dict(self.mode), nth

    def end_call(self):
        with self.lock:
            self.in_flight -= 1

    def stats(self):
        with self.lock:
            return {"calls": self.calls, "per_token": dict(self.per_token),
                    "max_concurrent": self.max_concurrent, "in_flight": self.in_flight,
                    "issued": len(self.issued), "faults": dict(self.faults)}


def make_jwt(entry, jwt_size=None):
    """An unsigned-but-well-formed compact JWS: real JSON header and payload, random signature."""
    header = {"alg": "RS256", "kid": "test", "typ": "JWT"}
    payload = {
        "iss": ISSUER, "aud": AUDIENCE, "sub": entry["sub"], "client_id": entry["client_id"],
        "scope": entry["scope"], "exp": entry["exp"], "iat": entry["iat"],
        "jti": b64url(os.urandom(12)),
    }
    payload.update(entry["claims"])
    signature = b64url(os.urandom(256))

    def build(p):
        return ".".join([b64url(json.dumps(header, separators=(",", ":")).encode()),
                         b64url(json.dumps(p, separators=(",", ":")).encode()), signature])

    jwt = build(payload)
    if jwt_size and jwt_size > len(jwt):
        # Pad with a claim; base64 turns 3 bytes into 4 characters, so aim and then trim exactly.
        pad = (jwt_size - len(jwt) - 16) * 3 // 4
        payload["pad"] = "x" * max(pad, 0)
        jwt = build(payload)
        while len(jwt) > jwt_size and payload["pad"]:
            payload["pad"] = payload["pad"][:-1]
            jwt = build(payload)
    return jwt, payload


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive; every answer carries Content-Length
    server_version = "test-idp/1"
    # Headers and body are written separately: without TCP_NODELAY, Nagle + delayed ACK add
    # 40 ms to every answer on loopback.
    disable_nagle_algorithm = True

    # --- plumbing -------------------------------------------------------------------------------

    def log_message(self, fmt, *args):  # noqa: N802 (stdlib name); paths never carry tokens
        if self.server.verbose:
            sys.stderr.write("idp: %s %s\n" % (self.address_string(), fmt % args))

    def _body(self):
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def _reset_connection(self):
        """Ends the connection with a TCP RST (SO_LINGER 0), as a crashed server or a middlebox
        would; the handler then stops using it."""
        self.close_connection = True
        try:
            self.wfile.flush()
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
        self.connection.close()

    def _send(self, status, body, content_type="application/json", extra=None):
        if isinstance(body, (dict, list)):
            body = json.dumps(body)
        if isinstance(body, str):
            body = body.encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (extra or {}).items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _from_loopback(self):
        try:
            return ipaddress.ip_address(self.client_address[0]).is_loopback
        except ValueError:
            return False

    # --- routing --------------------------------------------------------------------------------

    def do_GET(self):  # noqa: N802
        if self.path == "/_control/stats" and self._from_loopback():
            self._send(200, self.server.state.stats())
        elif self.path == "/_control/issued" and self._from_loopback():
            self._send(200, {"sha256": self.server.state.issued_list()})
        elif self.path == "/healthz":
            self._send(200, {"ok": True})
        else:
            self._send(404, {"error": "not_found"})

    def do_POST(self):  # noqa: N802
        body = self._body()
        path = urllib.parse.urlsplit(self.path).path
        if path == "/introspect":
            self._introspect(body)
        elif path.startswith("/_control/") and self._from_loopback():
            self._control(path, body)
        else:
            self._send(404, {"error": "not_found"})

    # --- control API ----------------------------------------------------------------------------

    def _control(self, path, body):
        state = self.server.state
        try:
            doc = json.loads(body or b"{}")
            if path == "/_control/tokens":
                state.register(doc)
            elif path == "/_control/reset":
                state.reset()
            elif path == "/_control/mode":
                state.set_mode(doc)
            else:
                self._send(404, {"error": "not_found"})
                return
        except (ValueError, KeyError, TypeError) as e:
            self._send(400, {"error": str(e)})
            return
        self._send(200, {"ok": True})

    # --- introspection --------------------------------------------------------------------------

    def _client_ok(self, form):
        """client_secret_basic or client_secret_post, when the server was given credentials."""
        srv = self.server
        if srv.client_id is None:
            return True
        auth = self.headers.get("Authorization", "")
        if auth[:6].lower() == "basic ":
            try:
                raw = base64.b64decode(auth[6:].strip(), validate=True).decode("utf-8")
                cid, _, secret = raw.partition(":")
                cid, secret = urllib.parse.unquote_plus(cid), urllib.parse.unquote_plus(secret)
            except (ValueError, UnicodeDecodeError):
                return False
        else:
            cid = form.get("client_id", [None])[0]
            secret = form.get("client_secret", [None])[0]
        return cid == srv.client_id and secret == srv.client_secret

    def _introspect(self, body):
        form = urllib.parse.parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)
        token = form.get("token", [None])[0]
        entry, mode, nth = self.server.state.begin_call(token)
        try:
            behaviour = dict((entry or {}).get("behaviour") or {})
            behaviour.update(mode)  # a global mode wins over per-token behaviour
            behaviour = self._flap(behaviour)
            if behaviour.get("once") and nth > 1:
                for k in ("status", "blackhole", "reset", "garbage", "huge_body", "delay_ms"):
                    behaviour.pop(k, None)
            delay = behaviour.get("delay_ms")
            if delay:
                time.sleep(float(delay) / 1000.0)
            if self._fault(behaviour):
                return
            if not self._client_ok(form):
                self._send(401, {"error": "invalid_client"},
                           extra={"WWW-Authenticate": 'Basic realm="introspection"'})
            elif behaviour.get("status") is not None:
                self._send(int(behaviour["status"]),
                           behaviour.get("body", '{"error":"simulated"}'),
                           behaviour.get("content_type", "application/json"),
                           extra=behaviour.get("headers"))
            elif token is None:
                self._send(400, {"error": "invalid_request"})
            else:
                self._answer(entry, behaviour)
        finally:
            self.server.state.end_call()

    # --- fault modes ----------------------------------------------------------------------------

    @staticmethod
    def _flap(behaviour):
        """A flapping server: the "down" behaviour during every other period_ms of wall time."""
        flap = behaviour.pop("flap", None)
        if not flap:
            return behaviour
        period = max(int(flap.get("period_ms", 500)), 1)
        if int(time.time() * 1000) // period % 2 == 1:
            behaviour.update(flap.get("down") or {"status": 503})
        return behaviour

    def _fault(self, behaviour):
        """Applies a fault mode; True when it took over the connection (nothing more to send)."""
        for name, run in (("blackhole", self._blackhole), ("reset", self._reset),
                          ("garbage", self._garbage), ("huge_body", self._huge_body)):
            value = behaviour.get(name)
            if value:
                self.server.state.count_fault(name)
                run(value)
                return True
        return False

    def _blackhole(self, _value):
        """Holds the request unanswered until the client gives up (closes) or the mode changes."""
        self.close_connection = True
        release = self.server.state.release
        deadline = time.monotonic() + 120
        while not release.is_set() and time.monotonic() < deadline:
            try:
                readable, _, _ = select.select([self.connection], [], [], 0.2)
                if readable and not self.connection.recv(4096, socket.MSG_PEEK):
                    return  # the client closed its side
            except (OSError, ValueError):
                return

    def _reset(self, where):
        if where == "mid_body":
            body = b'{"active": true, "sub": "reset-mid-body", "jwt": "' + b"x" * 4000
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(2 * len(body)))
            self.end_headers()
            try:
                self.wfile.write(body)
            except OSError:
                pass
        self._reset_connection()

    def _garbage(self, kind):
        junk = os.urandom(512)
        if kind == "wire":
            self.close_connection = True
            try:
                self.wfile.write(junk)
            except OSError:
                pass
            return
        self._send(200, junk, "application/jwt")

    def _huge_body(self, size):
        """Announces size bytes and streams them until done or until the client hangs up; the agent
        is expected to stop reading at its size limit."""
        size = int(size)
        self.close_connection = True
        self.send_response(200)
        self.send_header("Content-Type", "application/jwt")
        self.send_header("Content-Length", str(size))
        self.end_headers()
        chunk = b"A" * 65536
        sent = 0
        try:
            while sent < size:
                piece = chunk[:min(len(chunk), size - sent)]
                self.wfile.write(piece)
                sent += len(piece)
        except OSError:
            pass

    def _answer(self, entry, behaviour):
        extra = {}
        if behaviour.get("cache_control"):
            extra["Cache-Control"] = behaviour["cache_control"]
        if entry is None or entry["exp"] <= time.time():
            self._send(200, {"active": False}, extra=extra)
            return
        jwt, claims = make_jwt(entry, behaviour.get("jwt_size"))
        self.server.state.issue(jwt)
        accept = self.headers.get("Accept", "")
        keycloak = behaviour.get("keycloak") or (
            "application/json" in accept and "application/jwt" not in accept)
        if keycloak:
            doc = {"active": True, "token_type": "Bearer"}
            doc.update(claims)
            doc["jwt"] = jwt
            self._send(200, doc, extra=extra)
        else:
            self._send(200, jwt, behaviour.get("content_type", "application/jwt"), extra=extra)


class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256  # many agent connections at once in the load tests
    allow_reuse_address = True


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0, help="0 picks a free port (printed as READY <port>)")
    p.add_argument("--port-file", help="write the port there once listening")
    p.add_argument("--client-id", help="require this client (with --secret-file); default: no auth")
    p.add_argument("--secret-file", help="file holding the client secret")
    p.add_argument("--demo", action="store_true", help="pre-register the demo tokens")
    p.add_argument("--verbose", action="store_true", help="log every request (never tokens)")
    p.add_argument("--tls-cert", help="serve HTTPS with this certificate chain (PEM)")
    p.add_argument("--tls-key", help="the private key of --tls-cert (PEM)")
    p.add_argument("--tls-client-ca", help="require a client certificate signed by this CA (mTLS)")
    args = p.parse_args(argv)
    if bool(args.tls_cert) != bool(args.tls_key):
        p.error("--tls-cert and --tls-key go together")
    if args.secret_file and not args.client_id:
        args.client_id = DEFAULT_CLIENT_ID
    if args.client_id and not args.secret_file:
        p.error("--client-id needs --secret-file")
    return args


def tls_wrap(srv, args):
    """HTTPS (and mTLS with --tls-client-ca); the handshake happens in the handler thread, on the
    first read, so a client that fails it cannot stall the accept loop."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(args.tls_cert, args.tls_key)
    if args.tls_client_ca:
        ctx.verify_mode = ssl.CERT_REQUIRED
        ctx.load_verify_locations(args.tls_client_ca)
    srv.socket = ctx.wrap_socket(srv.socket, server_side=True, do_handshake_on_connect=False)


def main(argv=None):
    args = parse_args(argv)
    srv = Server((args.host, args.port), Handler)
    if args.tls_cert:
        tls_wrap(srv, args)
    srv.state = State(args.demo)
    srv.verbose = args.verbose
    srv.client_id = args.client_id
    srv.client_secret = None
    if args.secret_file:
        with open(args.secret_file, encoding="utf-8") as f:
            srv.client_secret = f.read().rstrip("\r\n")
    port = srv.server_address[1]
    if args.port_file:
        tmp = args.port_file + ".tmp"
        with open(tmp, "w", encoding="ascii") as f:
            f.write("%d\n" % port)
        os.replace(tmp, args.port_file)  # readers never see a half-written file
    if args.demo:
        sys.stderr.write("idp: demo tokens (opaque access tokens to send as Bearer):\n")
        for tok, spec in DEMO_TOKENS.items():
            sys.stderr.write("idp:   %s  sub=%s scope=%r\n" % (tok, spec["sub"], spec["scope"]))
    return serve(srv)


if __name__ == "__main__":
    sys.exit(main())
