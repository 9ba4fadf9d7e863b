#!/usr/bin/python3
"""The shipped haproxy.cfg + SPOE config + agent, row by row of the behaviour table: forwarding
with the JWT, every denial with its status, WWW-Authenticate and body, the Bearer syntax, scopes,
OPTIONS and HEAD, and that the client's Authorization header never reaches the API."""

import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

UNAUTHORIZED = {"code": "unauthorized_request",
                "message": "Access denied due to missing, invalid or expired credentials"}
FORBIDDEN = {"code": "forbidden", "message": "The token does not contain the required scope"}


def jwt_sub(authorization):
    import base64
    import json
    payload = authorization[len("Bearer "):].split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))["sub"]


class BehaviourTest(harness.StackTestCase):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.token = cls.stack.register("opaque-behaviour-0001-aaaa", sub="alice",
                                       scope="openid read", claims={"department": "sales"})
        cls.admin = cls.stack.register("opaque-behaviour-0002-bbbb", sub="bob",
                                       scope="openid admin read")

    def echo(self, r):
        """The backend's view of the request (fails the test when it was not forwarded)."""
        self.assertEqual(r.status, 200, r)
        return r.json()

    def backend_auth(self, seen):
        return [v for k, v in seen["headers"] if k.lower() == "authorization"]

    # --- valid token ----------------------------------------------------------------------------

    def test_valid_token_forwarded_with_jwt(self):
        seen = self.echo(self.stack.get(self.token))
        auth = self.backend_auth(seen)
        self.assertEqual(len(auth), 1)
        self.assertTrue(auth[0].startswith("Bearer eyJ"), auth)
        self.assertNotIn(self.token, auth[0])
        self.assertEqual(auth[0].count("."), 2)

    def test_jwt_carries_the_tokens_claims(self):
        import base64
        import json
        jwt = self.backend_auth(self.echo(self.stack.get(self.token)))[0][7:]
        payload = jwt.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        self.assertEqual(claims["sub"], "alice")
        self.assertEqual(claims["department"], "sales")

    def test_scheme_is_case_insensitive_and_spaces_allowed(self):
        for scheme in ("bearer", "BEARER", "bEaReR", "Bearer" + " " * 14):
            with self.subTest(scheme=scheme):
                r = self.stack.request(headers=[("Authorization", scheme + " " + self.token)])
                self.assertTrue(self.backend_auth(self.echo(r))[0].startswith("Bearer eyJ"))

    def test_other_headers_unchanged_none_added(self):
        sent = [("Accept", "application/xml;q=0.9, */*;q=0.1"), ("X-Request-Id", "abc-123"),
                ("Content-Type", "text/plain; charset=utf-8"), ("Cookie", "a=1; b=2")]
        r = self.stack.request(headers=[("Authorization", "Bearer " + self.token)] + sent,
                               method="POST", body=b"hello")
        seen = self.echo(r)
        others = [(k.lower(), v) for k, v in seen["headers"] if k.lower() != "authorization"]
        expected = [("host", "127.0.0.1:%d" % self.stack.haproxy_port)] + \
                   [(k.lower(), v) for k, v in sent] + [("content-length", "5")]
        self.assertEqual(others, expected)
        self.assertEqual(seen["body_length"], 5)

    # --- missing / not Bearer -------------------------------------------------------------------

    def assertUnauthorizedPlain(self, r):
        self.assertDenied(r, 401)
        self.assertEqual(r.header("WWW-Authenticate"), 'Bearer realm="api"')
        self.assertEqual(r.json(), UNAUTHORIZED)

    def test_missing_header_401(self):
        self.assertUnauthorizedPlain(self.stack.get(None))

    def test_empty_header_401(self):
        self.assertUnauthorizedPlain(self.stack.request(headers=[("Authorization", "")]))

    def test_basic_scheme_401(self):
        self.assertUnauthorizedPlain(
            self.stack.request(headers=[("Authorization", "Basic dXNlcjpwYXNz")]))
        self.assertUnauthorizedPlain(
            self.stack.request(headers=[("Authorization", "basic " + self.token)]))

    # --- malformed ------------------------------------------------------------------------------

    def test_malformed_bearer_400(self):
        # (the 20000-byte one is refused by haproxy.cfg itself: it would not fit in a SPOP frame)
        for value in ("Bearer a b", "Bearer", "Bearer ", "Bearer tok\"en", "Bearer " + "a" * 5000,
                      "Bearer " + "a" * 20000):
            with self.subTest(value=value[:20]):
                r = self.stack.request(headers=[("Authorization", value)])
                self.assertDenied(r, 400, "invalid_request")
                self.assertIn('realm="api"', r.header("WWW-Authenticate"))

    def test_two_authorization_headers_400(self):
        r = self.stack.request(headers=[("Authorization", "Bearer " + self.token),
                                        ("Authorization", "Bearer " + self.admin)])
        self.assertDenied(r, 400, "invalid_request")

    def test_comma_in_header_is_not_split(self):
        # req.fhdr keeps "Bearer x, Bearer y" whole: one header, malformed, never two tokens
        r = self.stack.request(headers=[("Authorization",
                                         "Bearer %s, Bearer %s" % (self.token, self.admin))])
        self.assertDenied(r, 400, "invalid_request")

    # --- invalid token --------------------------------------------------------------------------

    def test_unknown_token_401_invalid_token(self):
        r = self.stack.get("opaque-never-registered-1234")
        self.assertDenied(r, 401, "invalid_token")
        self.assertEqual(r.json(), UNAUTHORIZED)
        self.assertIn('realm="api"', r.header("WWW-Authenticate"))

    def test_trailing_garbage_is_another_token(self):
        r = self.stack.get(self.token + "xyz")
        self.assertDenied(r, 401, "invalid_token")

    def test_token_with_every_b64token_character(self):
        # '+', '/' and '=' must be form-encoded in the introspection request, or the IdP sees
        # another token
        tok = self.stack.register("Az09-._~+/opaque+token/with==")
        self.assertTrue(self.backend_auth(self.echo(self.stack.get(tok)))[0].startswith("Bearer "))

    def test_token_length_limit(self):
        longest = self.stack.register("L" * 4096)
        self.echo(self.stack.get(longest))
        self.assertDenied(self.stack.get("L" * 4097), 400, "invalid_request")

    def test_concurrent_distinct_tokens_get_their_own_jwt(self):
        """60 tokens at once over pipelined SPOP connections: no answer goes to the wrong request."""
        import threading
        toks = [self.stack.register("opaque-distinct-%03d-dddd" % i, sub="user-%03d" % i)
                for i in range(60)]
        subs = {}

        def run(i):
            r = self.stack.get(toks[i])
            subs[i] = (r.status, jwt_sub(self.backend_auth(r.json())[0]) if r.status == 200 else None)

        threads = [threading.Thread(target=run, args=(i,)) for i in range(60)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        self.assertEqual(subs, {i: (200, "user-%03d" % i) for i in range(60)})

    def test_expired_at_idp_401(self):
        tok = self.stack.register("opaque-behaviour-expired-0003", exp_in=-10)
        self.assertDenied(self.stack.get(tok), 401, "invalid_token")

    # --- scopes ---------------------------------------------------------------------------------

    def test_scoped_route_without_scope_403(self):
        r = self.stack.get(self.token, path="/api/admin/users")
        self.assertDenied(r, 403, "insufficient_scope")
        self.assertEqual(r.json(), FORBIDDEN)
        self.assertIn('scope="admin"', r.header("WWW-Authenticate"))

    def test_scoped_route_with_scope_forwarded(self):
        for path in ("/api/admin", "/api/admin/users?x=1"):
            with self.subTest(path=path):
                seen = self.echo(self.stack.get(self.admin, path=path))
                self.assertEqual(seen["path"], path)

    def test_scope_prefix_is_not_a_scoped_route(self):
        # /api/administrators is not below /api/admin: no scope required
        self.echo(self.stack.get(self.token, path="/api/administrators"))

    def test_cached_token_still_checked_for_scope(self):
        self.echo(self.stack.get(self.token))
        self.assertDenied(self.stack.get(self.token, path="/api/admin/x"), 403, "insufficient_scope")

    # --- routes, methods ------------------------------------------------------------------------

    def test_outside_api_404_not_forwarded(self):
        r = self.stack.get(self.token, path="/apix")
        self.assertEqual(r.status, 404)
        self.assertNotIn(b"headers", r.body)

    def test_options_preflight_forwarded_without_agent_or_authorization(self):
        before = self.stack.idp_calls()
        r = self.stack.request(method="OPTIONS", headers=[
            ("Origin", "https://app.example"), ("Access-Control-Request-Method", "GET"),
            ("Authorization", "Bearer opaque-sent-with-options-0004")])
        self.stack.secrets.add("opaque-sent-with-options-0004")
        seen = self.echo(r)
        self.assertEqual(seen["method"], "OPTIONS")
        self.assertEqual(self.backend_auth(seen), [])
        self.assertEqual(self.stack.idp_calls(), before)

    def test_head_same_status_and_headers_no_body(self):
        for token, status in ((None, 401), ("opaque-never-registered-5678", 401),
                              (self.token, 200), ("Bearer a b", 400)):
            with self.subTest(status=status, token=token):
                headers = []
                if token == "Bearer a b":
                    headers = [("Authorization", token)]
                elif token:
                    headers = [("Authorization", "Bearer " + token)]
                get = self.stack.request(headers=headers)
                head = self.stack.request(headers=headers, method="HEAD")
                self.assertEqual(head.status, status)
                self.assertEqual(get.status, status)
                self.assertEqual(head.body, b"")
                # (a forwarded HEAD gets the echo of "HEAD", one byte longer than "GET")
                names = ("Content-Type", "WWW-Authenticate") if status == 200 else \
                    ("Content-Type", "WWW-Authenticate", "Content-Length")
                for name in names:
                    self.assertEqual(head.header(name), get.header(name), name)

    def test_post_body_forwarded(self):
        body = b'{"order": 42}' * 100
        seen = self.echo(self.stack.request(method="POST", body=body, headers=[
            ("Authorization", "Bearer " + self.token), ("Content-Type", "application/json")]))
        self.assertEqual(seen["body_length"], len(body))


class RealmTest(harness.StackTestCase):
    """PHANTOM_REALM and PHANTOM_REQUIRED_SCOPES change the announced realm and the scopes."""

    STACK_ARGS = {"haproxy_env": {"PHANTOM_REALM": "orders", "PHANTOM_SCOPED_PATH": "/api/orders",
                                  "PHANTOM_REQUIRED_SCOPES": "orders:read orders:write"}}

    def test_realm_in_challenges(self):
        r = self.stack.get(None)
        self.assertEqual(r.status, 401)
        self.assertEqual(r.header("WWW-Authenticate"), 'Bearer realm="orders"')
        r = self.stack.get("opaque-realm-unknown-0001")
        self.assertIn('realm="orders"', r.header("WWW-Authenticate"))

    def test_multiple_required_scopes(self):
        one = self.stack.register("opaque-realm-one-scope-0002", scope="orders:read")
        both = self.stack.register("opaque-realm-two-scopes-0003",
                                   scope="openid orders:write orders:read")
        r = self.stack.get(one, path="/api/orders/1")
        self.assertEqual(r.status, 403)
        self.assertIn("insufficient_scope", r.header("WWW-Authenticate"))
        self.assertEqual(self.stack.get(both, path="/api/orders/1").status, 200)
        self.assertEqual(self.stack.get(one, path="/api/other").status, 200)


if __name__ == "__main__":
    harness.run()
