"""Smoke test of the test identity server itself (node-oidc-provider, tests/servers/oidc): a
client-credentials token is opaque, introspection answers plain RFC 7662 JSON and RFC 9701 JWTs
as the agent expects, revocation and scopes work. Runs without the agent, so a failure here points
at the test server, not at the agent."""

import tempfile
import shutil
import unittest

import harness
import oidc


class OidcServerTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmpdir = tempfile.mkdtemp(prefix="pta-oidc-")
        cls.idp = oidc.OidcIdp(cls.tmpdir)

    @classmethod
    def tearDownClass(cls):
        cls.idp.stop()
        shutil.rmtree(cls.tmpdir, ignore_errors=True)

    def test_token_is_opaque(self):
        r = self.idp.token_response(oidc.APP, "read write")
        self.assertEqual(r.status, 200, r)
        doc = r.json()
        self.assertEqual(doc["token_type"].lower(), "bearer")
        self.assertEqual(doc["scope"], "read write")
        self.assertGreater(doc["expires_in"], 0)
        self.assertNotIn(".", doc["access_token"])  # not a JWT: the agent must resolve it

    def test_plain_json_introspection(self):
        token = self.idp.token(oidc.APP, "read write")
        r = self.idp.introspect(token, oidc.GATEWAY)
        self.assertEqual(r.status, 200, r)
        self.assertTrue(r.header("Content-Type").startswith("application/json"), r)
        doc = r.json()
        self.assertIs(doc["active"], True)
        self.assertEqual(doc["client_id"], "app")
        self.assertEqual(doc["scope"], "read write")
        self.assertEqual(doc["iss"], self.idp.issuer)
        self.assertIsInstance(doc["exp"], int)
        self.assertNotIn("jwt", doc)  # plain RFC 7662: nothing to forward, the agent must mint

    def test_rfc9701_introspection(self):
        token = self.idp.token(oidc.APP, "read")
        r = self.idp.introspect(token, oidc.GATEWAY_JWT, accept=oidc.JWT_INTROSPECTION)
        self.assertEqual(r.status, 200, r)
        self.assertTrue(r.header("Content-Type").startswith(oidc.JWT_INTROSPECTION), r)
        header, payload = oidc.jwt_parts(r.body.decode())
        self.assertEqual(header["typ"], "token-introspection+jwt")
        self.assertEqual(payload["iss"], self.idp.issuer)
        self.assertEqual(payload["aud"], "gateway-jwt")  # the introspecting client, not an API
        ti = payload["token_introspection"]
        self.assertIs(ti["active"], True)
        self.assertEqual(ti["client_id"], "app")
        self.assertEqual(ti["scope"], "read")
        self.assertNotIn("scope", payload)  # why an API's access-token validator rejects it

    def test_rfc9701_client_asking_json_gets_json(self):
        token = self.idp.token(oidc.APP, "read")
        r = self.idp.introspect(token, oidc.GATEWAY_JWT, accept="application/json")
        self.assertEqual(r.status, 200, r)
        self.assertIs(r.json()["active"], True)

    def test_unknown_token_inactive(self):
        for client, accept in ((oidc.GATEWAY, "application/json"),
                               (oidc.GATEWAY_JWT, oidc.JWT_INTROSPECTION)):
            r = self.idp.introspect("no-such-token-" + "x" * 30, client, accept)
            self.assertEqual(r.status, 200, r)
            if accept == "application/json":
                self.assertEqual(r.json(), {"active": False})
            else:
                _, payload = oidc.jwt_parts(r.body.decode())
                self.assertIs(payload["token_introspection"]["active"], False)

    def test_revoked_token_inactive(self):
        token = self.idp.token(oidc.APP, "read")
        self.assertIs(self.idp.introspect(token).json()["active"], True)
        self.idp.revoke(token)
        self.assertEqual(self.idp.introspect(token).json(), {"active": False})

    def test_scopes_limited_per_client(self):
        r = self.idp.token_response(oidc.APP2, "read admin")
        self.assertEqual(r.status, 400, r)
        self.assertEqual(r.json()["error"], "invalid_scope")

    def test_wrong_gateway_secret(self):
        token = self.idp.token(oidc.APP, "read")
        r = self.idp.introspect(token, ("gateway", "wrong"))
        self.assertEqual(r.status, 401, r)


if __name__ == "__main__":
    harness.run()
