"""Gateway-minted JWTs end to end, against a real identity server: node-oidc-provider issues opaque
client-credentials tokens, the agent introspects them through HAProxy (plain RFC 7662 JSON in one
class, RFC 9701 signed answers in the other), mints an RFC 9068 access token, and the API behind
HAProxy verifies it with node's jose against the agent's own JWKS (signature, typ at+jwt, iss, aud,
exp): a standard validator, not the agent's code. Also: revoked and unknown tokens are 401, a
missing scope is 403, a cache hit forwards the same JWT (never re-signed), and a key rotation by
SIGHUP keeps the old kid published."""

import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import unittest

import harness
import oidc

ISSUER = "https://gateway.test"
AUDIENCE = "https://api.test"
MAX_LIFETIME = 120


def genkey(path, algorithm):
    args = {"ES256": ["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"],
            "RS256": ["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"],
            "EdDSA": ["-algorithm", "ED25519"]}[algorithm]
    subprocess.run(["openssl", "genpkey"] + args + ["-out", path], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.chmod(path, 0o600)
    return path


class MintBase(unittest.TestCase):
    """One IdP, one jose backend and one agent+HAProxy stack per class."""

    CLIENT_SUFFIX = ""            # "-jwt": the IdP's RFC 9701 client
    ACCEPT = "application/json"
    ALG = "ES256"
    AUDIENCES = [AUDIENCE]        # jwt-audience: the first is the default
    HAPROXY_CFG = None            # a test copy of haproxy.cfg, or the shipped one

    @classmethod
    def setUpClass(cls):
        if cls is MintBase:
            raise unittest.SkipTest("base class")
        harness.require_binaries()
        cls.tmp = tempfile.mkdtemp(prefix="pta-mint-")
        secret = os.path.join(cls.tmp, "gateway-secret")
        with open(os.open(secret, os.O_WRONLY | os.O_CREAT, 0o600), "w") as f:
            f.write(harness.CLIENT_SECRET)
        cls.idp = oidc.OidcIdp(cls.tmp, gateway_id=harness.CLIENT_ID, gateway_secret_file=secret)
        cls.http_port = harness.free_port()
        cls.jwks_url = "http://127.0.0.1:%d/.well-known/jwks.json" % cls.http_port
        cls.backend = oidc.JoseBackend(cls.tmp, cls.jwks_url, ISSUER, AUDIENCE)
        cls.key1 = genkey(os.path.join(cls.tmp, "key1.pem"), cls.ALG)
        cls.jwks_file = os.path.join(cls.tmp, "jwks.json")
        cls.conf = os.path.join(cls.tmp, "agent.conf")
        cls.write_conf([cls.key1])
        env = {"PHANTOM_BACKEND": "127.0.0.1:%d" % cls.backend.port}
        cls.stack = harness.Stack(
            agent_args=["--config", cls.conf, "--client-id", harness.CLIENT_ID + cls.CLIENT_SUFFIX,
                        "--accept", cls.ACCEPT, "--metrics-listen", "127.0.0.1:%d" % cls.http_port],
            idp_url=cls.idp.introspection_url, haproxy_env=env,
            haproxy_cfg=cls.HAPROXY_CFG(cls.tmp) if cls.HAPROXY_CFG else None)
        try:
            cls.stack.start()
        except BaseException:
            cls.stop_servers()
            raise

    @classmethod
    def write_conf(cls, keys):
        with open(cls.conf, "w") as f:
            f.write("jwt-source = auto\n"
                    "signing-key-file = %s\n"
                    "jwt-issuer = %s\njwt-audience = %s\njwt-max-lifetime = %ds\n"
                    "jwks-file = %s\n" % (", ".join(keys), ISSUER, ", ".join(cls.AUDIENCES),
                                          MAX_LIFETIME, cls.jwks_file))

    @classmethod
    def stop_servers(cls):
        for p in (cls.backend, cls.idp):
            p.stop()
        shutil.rmtree(cls.tmp, ignore_errors=True)

    @classmethod
    def tearDownClass(cls):
        cls.stack.stop()
        cls.stop_servers()

    # helpers
    def token(self, scope="read"):
        t = self.idp.token(oidc.APP, scope)
        self.stack.secrets.add(t)
        return t

    def jwks(self):
        r = harness.http_request(self.http_port, "GET", "/.well-known/jwks.json")
        self.assertEqual(r.status, 200, r)
        return r

    def verified(self, r):
        """The backend's verdict for a request HAProxy let through."""
        self.assertEqual(r.status, 200, r)
        doc = r.json()
        self.assertTrue(doc["verified"], doc)
        return doc

    # tests
    def test_minted_jwt_verified_by_jose(self):
        before = int(time.time())
        doc = self.verified(self.stack.get(self.token("read write")))
        h, c = doc["header"], doc["claims"]
        self.assertEqual(h["typ"], "at+jwt")
        self.assertEqual(h["alg"], self.ALG)
        kids = [k["kid"] for k in json.loads(self.jwks().body)["keys"]]
        self.assertEqual(h["kid"], kids[0])
        self.assertEqual(c["iss"], ISSUER)
        self.assertEqual(c["aud"], AUDIENCE)
        self.assertEqual(c["client_id"], "app")
        self.assertEqual(c["sub"], "app")  # client credentials: the client is the subject
        self.assertEqual(c["scope"], "read write")
        self.assertGreaterEqual(c["iat"], before - 1)
        self.assertLessEqual(c["exp"], c["iat"] + MAX_LIFETIME)  # bounded by jwt-max-lifetime
        self.assertNotIn("active", c)
        self.assertNotIn("token_introspection", c)

    def test_cache_hit_forwards_the_same_jwt(self):
        t = self.token()
        a = self.verified(self.stack.get(t))["claims"]["jti"]
        b = self.verified(self.stack.get(t))["claims"]["jti"]
        self.assertEqual(a, b)

    def test_distinct_tokens_distinct_jti(self):
        a = self.verified(self.stack.get(self.token()))["claims"]["jti"]
        b = self.verified(self.stack.get(self.token()))["claims"]["jti"]
        self.assertNotEqual(a, b)

    def test_revoked_token_401(self):
        t = self.token()
        self.idp.revoke(t)
        r = self.stack.get(t)
        self.assertEqual(r.status, 401, r)
        self.assertIn('error="invalid_token"', r.header("WWW-Authenticate"))

    def test_unknown_token_401(self):
        r = self.stack.get("unknown-opaque-token-" + "z" * 30)
        self.assertEqual(r.status, 401, r)
        self.assertIn('error="invalid_token"', r.header("WWW-Authenticate"))

    def test_missing_scope_403_present_scope_200(self):
        r = self.stack.get(self.token("read"), path="/api/admin/users")
        self.assertEqual(r.status, 403, r)
        self.assertIn('error="insufficient_scope"', r.header("WWW-Authenticate"))
        self.verified(self.stack.get(self.token("read admin"), path="/api/admin/users"))

    def test_jwks_endpoint_public_keys_only(self):
        r = self.jwks()
        self.assertTrue(r.header("Content-Type").startswith("application/json"), r)
        self.assertIn("max-age=", r.header("Cache-Control") or "")
        for k in json.loads(r.body)["keys"]:
            self.assertEqual(k["use"], "sig")
            self.assertEqual(k["alg"], self.ALG)
            for private in ("d", "p", "q", "dp", "dq", "qi"):
                self.assertNotIn(private, k)
        with open(self.jwks_file) as f:
            self.assertEqual(json.load(f), json.loads(r.body))


    def test_zz_logs_never_contain_tokens(self):
        self.assertEqual(self.stack.leaked_secrets(), [], "secrets found in the agent/HAProxy logs")


class PlainJsonTest(MintBase):
    """node-oidc-provider's plain RFC 7662 answers (which gave 502 before minting)."""


class Rfc9701Test(MintBase):
    """RFC 9701 signed introspection answers: the API gets a minted access token instead."""
    CLIENT_SUFFIX = "-jwt"
    ACCEPT = oidc.JWT_INTROSPECTION
    ALG = "EdDSA"


class RotationTest(MintBase):
    """SIGHUP with a new key first: the new kid signs, the old kid stays in the JWKS, and a JWT
    signed before the rotation still verifies."""
    ALG = "RS256"

    def test_rotation_keeps_old_kid(self):
        t_old = self.token()
        old = self.verified(self.stack.get(t_old))
        old_kid = old["header"]["kid"]
        key2 = genkey(os.path.join(self.tmp, "key2.pem"), "ES256")
        self.write_conf([key2, self.key1])
        os.kill(self.stack.procs["agent"].pid, signal.SIGHUP)

        def rotated():
            kids = [k["kid"] for k in json.loads(self.jwks().body)["keys"]]
            return kids if len(kids) == 2 else None
        kids = harness.wait_until(rotated, 15, "JWKS with two keys")
        self.assertEqual(kids[1], old_kid)
        new = self.verified(self.stack.get(self.token()))
        self.assertEqual(new["header"]["kid"], kids[0])
        self.assertEqual(new["header"]["alg"], "ES256")
        # The cached entry still forwards the JWT signed by the old key, which still verifies.
        again = self.verified(self.stack.get(t_old))
        self.assertEqual(again["claims"]["jti"], old["claims"]["jti"])
        self.assertEqual(again["header"]["kid"], old_kid)
        with open(self.jwks_file) as f:
            self.assertEqual([k["kid"] for k in json.load(f)["keys"]], kids)


class CheckConfigTest(unittest.TestCase):
    """--check-config says what minting lacks: an error for jwt-source mint, a warning for auto."""

    def check(self, *args):
        harness.require_binaries()
        p = subprocess.run([harness.AGENT, "--check-config", "--client-auth", "none",
                            "--introspection-url", "http://127.0.0.1:9/introspect"] + list(args),
                           capture_output=True, text=True, timeout=30)
        return p.returncode, p.stdout + p.stderr

    def test_mint_without_settings_is_invalid(self):
        rc, out = self.check("--jwt-source", "mint")
        self.assertEqual(rc, 2, out)
        self.assertIn("jwt-source mint needs: signing-key-file jwt-issuer jwt-audience", out)

    def test_auto_without_settings_warns(self):
        rc, out = self.check()
        self.assertEqual(rc, 0, out)
        self.assertIn("jwt-source auto cannot mint (missing: signing-key-file jwt-issuer "
                      "jwt-audience)", out)

    def test_key_readable_by_others_is_refused(self):
        with tempfile.TemporaryDirectory() as d:
            key = genkey(os.path.join(d, "k.pem"), "ES256")
            os.chmod(key, 0o644)
            rc, out = self.check("--signing-key-file", key, "--jwt-issuer", "i",
                                 "--jwt-audience", "a")
            self.assertEqual(rc, 2, out)
            self.assertIn("accessible to other users", out)
            os.chmod(key, 0o600)
            rc, out = self.check("--signing-key-file", key, "--jwt-issuer", "i",
                                 "--jwt-audience", "a")
            self.assertEqual(rc, 0, out)
            self.assertNotIn("cannot mint", out)

    def test_bad_lists_are_refused(self):
        for args, msg in ((["--inactive-statuses", "500"], "not a status from 400 to 499"),
                          (["--jwt-claims", "iss"], "set by the gateway itself"),
                          (["--jwt-source", "sometimes"], "expected auto, idp or mint")):
            rc, out = self.check(*args)
            self.assertEqual(rc, 2, out)
            self.assertIn(msg, out)


ORDERS = "https://orders.test"


def cfg_with_orders_route(tmp):
    """The shipped haproxy.cfg plus one route that asks for another audience."""
    with open(harness.HAPROXY_CFG) as f:
        text = f.read()
    marker = "    http-request send-spoe-group phantom-token phantom-auth\n"
    assert marker in text
    path = os.path.join(tmp, "haproxy.cfg")
    with open(path, "w") as f:
        f.write(text.replace(marker, "    http-request set-var(txn.phantom_audience) str(%s) if "
                             "{ path_beg /api/orders }\n    http-request set-var(txn.phantom_audience)"
                             " str(https://unknown.test) if { path_beg /api/nowhere }\n%s"
                             % (ORDERS, marker)))
    return path


class AudienceTest(MintBase):
    """Per-route audiences (SPOE argument audience): the entry holds one minted JWT per configured
    audience, so the route picks its own without a signature per request; an audience the gateway
    does not mint for is a 500, never another API's JWT."""
    AUDIENCES = [AUDIENCE, ORDERS]
    HAPROXY_CFG = staticmethod(cfg_with_orders_route)

    def test_route_audience(self):
        t = self.token()
        default = self.verified(self.stack.get(t))
        self.assertEqual(default["claims"]["aud"], AUDIENCE)
        # The jose backend checks aud = AUDIENCE: the orders JWT is refused there, as it must be
        # for an API with another audience; its header and claims are still echoed.
        r = self.stack.get(t, path="/api/orders/1")
        self.assertEqual(r.status, 200, r)
        doc = r.json()
        self.assertFalse(doc["verified"])
        self.assertIn("aud", doc["error"])
        auth = [v for k, v in doc["headers"] if k.lower() == "authorization"][0]
        _, claims = oidc.jwt_parts(auth[len("Bearer "):])
        self.assertEqual(claims["aud"], ORDERS)
        self.assertEqual(claims["sub"], default["claims"]["sub"])
        self.assertNotEqual(claims["jti"], default["claims"]["jti"])
        # Both come from the one cache entry: asking again gives the same JWTs.
        again = self.stack.get(t, path="/api/orders/1").json()
        self.assertEqual([v for k, v in again["headers"] if k.lower() == "authorization"][0], auth)
        self.assertEqual(self.verified(self.stack.get(t))["claims"]["jti"],
                         default["claims"]["jti"])

    def test_unknown_audience_500(self):
        r = self.stack.get(self.token(), path="/api/nowhere")
        self.assertEqual(r.status, 500, r)


if __name__ == "__main__":
    harness.run()
