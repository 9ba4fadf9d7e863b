#!/usr/bin/python3
"""Revocation through the agent's HTTP server, seen from HAProxy's side: POST /admin/purge drops
cached tokens by each selector kind (the next request is re-introspected and denied once the test
IdP has revoked the token), a purge during an in-flight introspection keeps its answer out of the
cache, a wrong admin token or a malformed body purges nothing, GET /admin/cache lists entries
without JWTs, and POST /backchannel-logout accepts a logout token signed with the test's own
Ed25519 key (served as a JWKS) and refuses a bad signature, a wrong aud and a replayed jti.
Logout tokens are signed with the openssl command line, so the test needs no Python crypto."""

import base64
import json
import os
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

ADMIN_TOKEN = "admin-" + uuid.uuid4().hex
LOGOUT_ISS = "https://idp.logout.test"
LOGOUT_EVENT = "http://schemas.openid.net/event/backchannel-logout"


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


class Ed25519Key:
    """An Ed25519 key made and used with the openssl command line."""

    def __init__(self, tmpdir, kid):
        self.kid = kid
        self.path = os.path.join(tmpdir, "%s-%s.pem" % (kid, uuid.uuid4().hex))
        subprocess.run(["openssl", "genpkey", "-algorithm", "ED25519", "-out", self.path],
                       check=True, capture_output=True)
        der = subprocess.run(["openssl", "pkey", "-in", self.path, "-pubout", "-outform", "DER"],
                             check=True, capture_output=True).stdout
        self.public = der[-32:]  # SPKI of Ed25519: a fixed 12-byte prefix, then the key

    def jwk(self):
        return {"kty": "OKP", "crv": "Ed25519", "x": b64url(self.public), "kid": self.kid,
                "use": "sig", "alg": "EdDSA"}

    def sign(self, header, payload):
        signing_input = (b64url(json.dumps(header).encode()) + "." +
                         b64url(json.dumps(payload).encode()))
        with tempfile.NamedTemporaryFile() as f:
            f.write(signing_input.encode())
            f.flush()
            sig = subprocess.run(["openssl", "pkeyutl", "-sign", "-rawin", "-inkey", self.path,
                                  "-in", f.name], check=True, capture_output=True).stdout
        return signing_input + "." + b64url(sig)


class JwksServer:
    """Serves {"keys": [...]} on a loopback port (HTTPS with tls=(cert, key)) and counts the
    fetches."""

    def __init__(self, tls=None):
        self.keys = []
        self.fetches = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802
                outer.fetches += 1
                body = json.dumps({"keys": outer.keys}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        if tls:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(*tls)
            self.srv.socket = ctx.wrap_socket(self.srv.socket, server_side=True)
        self.port = self.srv.server_address[1]
        threading.Thread(target=self.srv.serve_forever, daemon=True).start()

    def stop(self):
        self.srv.shutdown()


class RevocationTest(harness.StackTestCase):

    @classmethod
    def setUpClass(cls):
        cls.keydir = tempfile.mkdtemp(prefix="pta-keys-")
        cls.key = Ed25519Key(cls.keydir, "logout-key-1")
        cls.intruder = Ed25519Key(cls.keydir, "logout-key-1")  # same kid, another key
        cls.jwks = JwksServer()
        cls.jwks.keys = [cls.key.jwk()]
        cls.http_port = harness.free_port()
        token_file = os.path.join(cls.keydir, "admin-token")
        fd = os.open(token_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(ADMIN_TOKEN + "\n")
        cls.STACK_ARGS = {"agent_args": [
            "--http-listen", "127.0.0.1:%d" % cls.http_port,
            "--admin-token-file", token_file,
            "--backchannel-logout-issuer", LOGOUT_ISS,
            "--backchannel-logout-jwks-url", "http://127.0.0.1:%d/jwks" % cls.jwks.port,
            "--backchannel-logout-client-id", harness.CLIENT_ID]}
        super().setUpClass()
        cls.stack.secrets.add(ADMIN_TOKEN)
        harness.wait_until(lambda: cls.jwks.fetches >= 1, 15, "the agent fetched the JWKS")

    @classmethod
    def tearDownClass(cls):
        super().tearDownClass()
        cls.jwks.stop()

    # --- helpers ------------------------------------------------------------------------------

    def admin(self, method, path, doc=None, token=ADMIN_TOKEN, raw=None):
        headers = [("Authorization", "Bearer " + token)] if token else []
        body = raw if raw is not None else (None if doc is None else json.dumps(doc).encode())
        if body is not None:
            headers.append(("Content-Type", "application/json"))
        return harness.http_request(self.http_port, method, path, headers, body)

    def purge(self, doc, expect=200):
        r = self.admin("POST", "/admin/purge", doc)
        self.assertEqual(r.status, expect, r)
        return r.json().get("purged") if expect == 200 else r

    def cached(self, token, **claims):
        """Registers token, gets it cached (one introspection), then revokes it at the IdP:
        from now on only the cache says yes."""
        self.stack.register(token, **claims)
        self.assertEqual(self.stack.get(token).status, 200)
        self.assertEqual(self.stack.get(token).status, 200)
        self.assertEqual(self.stack.idp_calls(token), 1)
        self.revoke_at_idp(token, **claims)
        self.assertEqual(self.stack.get(token).status, 200)  # still cached
        return token

    def revoke_at_idp(self, token, **claims):
        claims = dict(claims)
        claims["exp_in"] = -60  # the test IdP answers {"active": false} for an expired token
        self.stack.register(token, **claims)

    def assert_revoked(self, token, calls_before=1):
        r = self.stack.get(token)
        self.assertEqual(r.status, 401, r)
        self.assertEqual(self.stack.idp_calls(token), calls_before + 1)

    def assert_still_cached(self, token):
        calls = self.stack.idp_calls(token)
        self.assertEqual(self.stack.get(token).status, 200)
        self.assertEqual(self.stack.idp_calls(token), calls)

    def logout_token(self, key=None, **over):
        claims = {"iss": LOGOUT_ISS, "aud": harness.CLIENT_ID, "iat": int(time.time()),
                  "jti": uuid.uuid4().hex, "events": {LOGOUT_EVENT: {}}}
        claims.update(over)
        claims = {k: v for k, v in claims.items() if v is not None}
        key = key or self.key
        return key.sign({"alg": "EdDSA", "kid": key.kid, "typ": "logout+jwt"}, claims)

    def logout(self, token, content_type="application/x-www-form-urlencoded"):
        body = urllib.parse.urlencode({"logout_token": token}).encode()
        return harness.http_request(self.http_port, "POST", "/backchannel-logout",
                                    [("Content-Type", content_type)], body)

    def metric(self, name):
        r = harness.http_request(self.http_port, "GET", "/metrics")
        for line in r.body.decode().splitlines():
            if line.startswith(name + " "):
                return float(line.split()[-1])
        raise AssertionError("no metric %s" % name)

    # --- admin purge --------------------------------------------------------------------------

    def test_purge_by_token(self):
        tok = self.cached("opaque-purge-token-0001", sub="p-token")
        self.assertEqual(self.purge({"token": tok}), 1)
        self.assertEqual(self.purge({"token": tok}), 0)  # nothing left to drop
        self.assert_revoked(tok)

    def test_purge_by_token_hash(self):
        tok = self.cached("opaque-purge-hash-0002", sub="p-hash")
        self.assertEqual(self.purge({"token_hash": harness.token_id(tok)}), 1)
        self.assert_revoked(tok)

    def test_purge_by_sub(self):
        a = self.cached("opaque-purge-sub-0003a", sub="p-sub-alice")
        b = self.cached("opaque-purge-sub-0003b", sub="p-sub-alice")
        other = self.cached("opaque-purge-sub-0003c", sub="p-sub-bob")
        self.assertEqual(self.purge({"sub": "p-sub-alice"}), 2)
        self.assert_revoked(a)
        self.assert_revoked(b)
        self.assert_still_cached(other)

    def test_purge_by_client_id(self):
        a = self.cached("opaque-purge-client-0004a", sub="p-c1", client_id="purge-client-x")
        other = self.cached("opaque-purge-client-0004b", sub="p-c2", client_id="purge-client-y")
        self.assertEqual(self.purge({"client_id": "purge-client-x"}), 1)
        self.assert_revoked(a)
        self.assert_still_cached(other)

    def test_purge_by_sid(self):
        a = self.cached("opaque-purge-sid-0005a", sub="p-sid", claims={"sid": "sess-purge-1"})
        other = self.cached("opaque-purge-sid-0005b", sub="p-sid", claims={"sid": "sess-purge-2"})
        self.assertEqual(self.purge({"sid": "sess-purge-1"}), 1)
        self.assert_revoked(a)
        self.assert_still_cached(other)

    def test_purge_all(self):
        a = self.cached("opaque-purge-all-0006a", sub="p-all-1")
        b = self.cached("opaque-purge-all-0006b", sub="p-all-2")
        self.assertGreaterEqual(self.purge({"all": True}), 2)
        self.assert_revoked(a)
        self.assert_revoked(b)

    def test_purge_during_inflight_introspection(self):
        tok = "opaque-purge-inflight-0007"
        self.stack.register(tok, sub="p-inflight", behaviour={"delay_ms": 1500})
        result = {}
        t = threading.Thread(target=lambda: result.setdefault("r", self.stack.get(tok)))
        t.start()
        harness.wait_until(lambda: self.stack.idp_stats()["in_flight"] >= 1, 10,
                           "the introspection is in flight")
        self.revoke_at_idp(tok, sub="p-inflight")
        self.assertEqual(self.purge({"token": tok}), 0)  # nothing cached yet
        t.join(30)
        self.assertEqual(result["r"].status, 200)  # the IdP's answer from before the purge
        # ... but it did not fill the cache: the next request asks the IdP again.
        self.assert_revoked(tok)

    def test_wrong_admin_token_purges_nothing(self):
        tok = self.cached("opaque-purge-wrongadmin-0008", sub="p-wrong")
        for bad in ("not-the-token", ADMIN_TOKEN + "x", ADMIN_TOKEN[:-1], None):
            r = self.admin("POST", "/admin/purge", {"all": True}, token=bad)
            self.assertEqual(r.status, 401, r)
            self.assertIn("Bearer", r.header("WWW-Authenticate") or "")
        self.assert_still_cached(tok)

    def test_malformed_bodies(self):
        tok = self.cached("opaque-purge-malformed-0009", sub="p-malformed")
        for raw in (b"", b"sub=alice", b"{", b"[]", b"{}", b'{"sub":"a","sid":"b"}',
                    b'{"all":false}', b'{"user":"x"}', b'{"token_hash":"xyz"}', b'{"sub":7}'):
            r = self.admin("POST", "/admin/purge", raw=raw)
            self.assertEqual(r.status, 400, (raw, r))
            self.assertEqual(r.json()["error"], "invalid_request")
        self.assert_still_cached(tok)

    def test_list_cache_by_sub(self):
        tok = "opaque-list-0010"
        self.stack.register(tok, sub="p-list", claims={"sid": "sess-list"})
        self.assertEqual(self.stack.get(tok).status, 200)
        r = self.admin("GET", "/admin/cache?sub=p-list")
        self.assertEqual(r.status, 200, r)
        doc = r.json()
        self.assertEqual(doc["count"], 1)
        e = doc["entries"][0]
        self.assertEqual(e["token_hash"], harness.token_id(tok))
        self.assertEqual(e["sub"], "p-list")
        self.assertEqual(e["sid"], "sess-list")
        self.assertGreater(e["expires_at"], time.time())
        self.assertNotIn("jwt", json.dumps(doc).lower())
        self.assertNotIn(b"eyJ", r.body)  # no JWT in any form
        self.assertEqual(self.admin("GET", "/admin/cache").status, 400)
        self.assertEqual(self.admin("GET", "/admin/cache?sub=p-list", token="bad").status, 401)

    def test_purge_metrics(self):
        before = self.metric('phantom_purges_total{selector="sub"}')
        self.purge({"sub": "p-metrics-nobody"})
        self.assertEqual(self.metric('phantom_purges_total{selector="sub"}'), before + 1)

    # --- back-channel logout ------------------------------------------------------------------

    def test_logout_purges_sub_and_sid(self):
        a = self.cached("opaque-logout-0011a", sub="l-alice", claims={"sid": "l-sess-1"})
        other = self.cached("opaque-logout-0011b", sub="l-bob", claims={"sid": "l-sess-2"})
        r = self.logout(self.logout_token(sub="l-alice", sid="l-sess-1"))
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.header("Cache-Control"), "no-store")
        self.assert_revoked(a)
        self.assert_still_cached(other)

    def test_logout_by_sid_only(self):
        a = self.cached("opaque-logout-0012", sub="l-carol", claims={"sid": "l-sess-3"})
        self.assertEqual(self.logout(self.logout_token(sid="l-sess-3")).status, 200)
        self.assert_revoked(a)

    def refused(self, r, tok):
        self.assertEqual(r.status, 400, r)
        self.assertEqual(r.json()["error"], "invalid_request")
        self.assertEqual(r.header("Cache-Control"), "no-store")
        self.assert_still_cached(tok)

    def test_logout_bad_signature(self):
        tok = self.cached("opaque-logout-0013", sub="l-dave")
        self.refused(self.logout(self.logout_token(key=self.intruder, sub="l-dave")), tok)

    def test_logout_wrong_aud(self):
        tok = self.cached("opaque-logout-0014", sub="l-erin")
        self.refused(self.logout(self.logout_token(sub="l-erin", aud="another-client")), tok)

    def test_logout_replayed_jti(self):
        a = self.cached("opaque-logout-0015a", sub="l-frank")
        lt = self.logout_token(sub="l-frank")
        self.assertEqual(self.logout(lt).status, 200)
        self.assert_revoked(a)
        b = self.cached("opaque-logout-0015b", sub="l-frank")
        self.refused(self.logout(lt), b)

    def test_logout_other_refusals(self):
        tok = self.cached("opaque-logout-0016", sub="l-gina")
        for lt in (self.logout_token(sub="l-gina", iss="https://evil.test"),
                   self.logout_token(sub="l-gina", events=None),
                   self.logout_token(sub="l-gina", nonce="n"),
                   self.logout_token(sub=None),
                   self.logout_token(sub="l-gina", iat=int(time.time()) - 3600)):
            self.refused(self.logout(lt), tok)
        header = b64url(json.dumps({"alg": "none"}).encode())
        payload = b64url(json.dumps({"iss": LOGOUT_ISS, "sub": "l-gina"}).encode())
        self.refused(self.logout(header + "." + payload + "."), tok)
        self.refused(self.logout(self.logout_token(sub="l-gina"), content_type="text/plain"), tok)

    def test_logout_unknown_kid_triggers_refetch(self):
        rotated = Ed25519Key(self.keydir, "logout-key-2")
        fetches = self.jwks.fetches
        self.jwks.keys = [self.key.jwk(), rotated.jwk()]
        tok = self.cached("opaque-logout-0017", sub="l-hank")
        lt = rotated.sign({"alg": "EdDSA", "kid": rotated.kid},
                          {"iss": LOGOUT_ISS, "aud": harness.CLIENT_ID, "iat": int(time.time()),
                           "jti": uuid.uuid4().hex, "events": {LOGOUT_EVENT: {}},
                           "sub": "l-hank"})
        self.refused(self.logout(lt), tok)  # not known yet: refused, and a refetch starts
        harness.wait_until(lambda: self.jwks.fetches > fetches, 30, "JWKS refetched")
        harness.wait_until(lambda: self.logout(lt).status == 200, 15, "the new key is used")
        self.assert_revoked(tok)

    # --- revocation lag (printed, never asserted: a loaded 2-core box must not fail it) ----------

    def test_revocation_lag(self):
        """Time from the start of a purge (admin API) or of a logout POST to the first 401 through
        HAProxy, for tokens cached and already revoked at the IdP."""
        lags = {"admin purge": [], "back-channel logout": []}
        for i in range(20):
            tok = self.cached("opaque-lag-%04d" % i, sub="lag-user-%d" % i)
            t0 = time.monotonic()
            self.assertEqual(self.purge({"sub": "lag-user-%d" % i}), 1)
            self.assertEqual(self.stack.get(tok).status, 401)
            lags["admin purge"].append(time.monotonic() - t0)
            tok = self.cached("opaque-lag-logout-%04d" % i, sub="lag-logout-%d" % i)
            lt = self.logout_token(sub="lag-logout-%d" % i)
            t0 = time.monotonic()
            self.assertEqual(self.logout(lt).status, 200)
            self.assertEqual(self.stack.get(tok).status, 401)
            lags["back-channel logout"].append(time.monotonic() - t0)
        for what, xs in lags.items():
            xs.sort()
            sys.stderr.write("revocation lag, %s (purge/logout + next request -> 401): "
                             "p50 %.1f ms, max %.1f ms over %d\n"
                             % (what, xs[len(xs) // 2] * 1e3, xs[-1] * 1e3, len(xs)))



class HttpsJwksTest(harness.StackTestCase):
    """The JWKS over HTTPS: trusted through ca-file the keys load and a logout is accepted; the
    certificate is verified (a second server whose CA the agent does not know never loads)."""

    @classmethod
    def setUpClass(cls):
        from test_tls import make_pki
        cls.keydir = tempfile.mkdtemp(prefix="pta-keys-")
        pki = make_pki(cls.keydir)
        cls.key = Ed25519Key(cls.keydir, "https-key-1")
        cls.jwks = JwksServer(tls=(pki["server.pem"], pki["server.key"]))
        cls.jwks.keys = [cls.key.jwk()]
        cls.http_port = harness.free_port()
        cls.STACK_ARGS = {"agent_args": [
            "--http-listen", "127.0.0.1:%d" % cls.http_port, "--ca-file", pki["ca.pem"],
            "--backchannel-logout-issuer", LOGOUT_ISS,
            "--backchannel-logout-jwks-url", "https://127.0.0.1:%d/jwks" % cls.jwks.port]}
        super().setUpClass()
        harness.wait_until(lambda: cls.jwks.fetches >= 1, 15, "the agent fetched the JWKS")

    @classmethod
    def tearDownClass(cls):
        super().tearDownClass()
        cls.jwks.stop()

    def metric(self, name):
        r = harness.http_request(self.http_port, "GET", "/metrics")
        for line in r.body.decode().splitlines():
            if line.startswith(name + " "):
                return float(line.split()[-1])
        raise AssertionError("no metric %s" % name)

    def test_keys_over_https(self):
        harness.wait_until(
            lambda: self.metric('phantom_logout_jwks_fetches_total{result="ok"}') >= 1, 15,
            "keys loaded over HTTPS")
        tok = "opaque-https-jwks-0001"
        self.stack.register(tok, sub="https-user")
        self.assertEqual(self.stack.get(tok).status, 200)
        self.stack.register(tok, sub="https-user", exp_in=-60)
        lt = self.key.sign({"alg": "EdDSA", "kid": self.key.kid},
                           {"iss": LOGOUT_ISS, "aud": harness.CLIENT_ID, "iat": int(time.time()),
                            "jti": uuid.uuid4().hex, "events": {LOGOUT_EVENT: {}},
                            "sub": "https-user"})
        body = urllib.parse.urlencode({"logout_token": lt}).encode()
        r = harness.http_request(self.http_port, "POST", "/backchannel-logout",
                                 [("Content-Type", "application/x-www-form-urlencoded")], body)
        self.assertEqual(r.status, 200, r)
        self.assertEqual(self.stack.get(tok).status, 401)

    def test_untrusted_certificate_is_refused(self):
        other = tempfile.mkdtemp(prefix="pta-pki-")
        from test_tls import make_pki
        pki = make_pki(other)  # another CA: the agent's ca-file does not know it
        srv = JwksServer(tls=(pki["server.pem"], pki["server.key"]))
        try:
            agent = harness.Proc("agent-untrusted", [
                harness.AGENT, "--listen", "127.0.0.1:%d" % harness.free_port(),
                "--http-listen", "127.0.0.1:%d" % harness.free_port(),
                "--introspection-url", self.stack.introspection_url,
                "--client-id", harness.CLIENT_ID, "--client-auth", "none",
                "--backchannel-logout-issuer", LOGOUT_ISS,
                "--backchannel-logout-jwks-url", "https://127.0.0.1:%d/jwks" % srv.port],
                self.stack.tmpdir)
            harness.wait_until(lambda: agent.check_alive() and "jwks: fetch failed" in
                               agent.log_text(), 15, "the fetch refused")
            self.assertEqual(srv.fetches, 0)  # the handshake failed: no request was served
            agent.stop()
        finally:
            srv.stop()


if __name__ == "__main__":
    harness.run()
