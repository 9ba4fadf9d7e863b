#!/usr/bin/python3
"""Identity server failures map to 502/503/500 with the server_error body, are never cached and
never forwarded; a hung IdP times out (502) while cached tokens keep being answered at once;
client authentication (basic and post) works and a wrong secret is a 502."""

import os
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

SERVER_ERROR = {"code": "server_error", "message": "Problem encountered processing the request"}


class IdpFailuresTest(harness.StackTestCase):
    # Status by status, many failures in a row: the circuit breaker would answer 503 for them
    # (test_faults.py tests it).
    STACK_ARGS = {"agent_args": ["--breaker-failures", "0"]}

    def assertServerError(self, r, status):
        self.assertDenied(r, status)
        self.assertEqual(r.json(), SERVER_ERROR)
        self.assertIsNone(r.header("WWW-Authenticate"))

    def token_with(self, name, **behaviour):
        return self.stack.register("opaque-idpfail-%s-0001" % name, behaviour=behaviour)

    def test_idp_503_gives_503(self):
        self.assertServerError(self.stack.get(self.token_with("503", status=503)), 503)

    def test_idp_500_gives_502(self):
        self.assertServerError(self.stack.get(self.token_with("500", status=500)), 502)

    def test_idp_418_gives_500(self):
        self.assertServerError(self.stack.get(self.token_with("418", status=418)), 500)

    def test_idp_404_gives_502(self):
        self.assertServerError(self.stack.get(self.token_with("404", status=404)), 502)

    def test_idp_401_403_and_5xx_give_502(self):
        for status in (401, 403, 501, 502, 504):
            with self.subTest(idp_status=status):
                tok = self.token_with("s%d" % status, status=status)
                self.assertServerError(self.stack.get(tok), 502)

    def test_idp_other_statuses_give_500(self):
        for status in (302, 400, 429):
            with self.subTest(idp_status=status):
                tok = self.token_with("o%d" % status, status=status)
                self.assertServerError(self.stack.get(tok), 500)

    def test_malformed_jwt_gives_502(self):
        tok = self.token_with("badjwt", status=200, content_type="application/jwt",
                              body="not.a-jwt")
        self.assertServerError(self.stack.get(tok), 502)

    def test_html_answer_gives_502(self):
        tok = self.token_with("html", status=200, content_type="text/html",
                              body="<html>login</html>")
        self.assertServerError(self.stack.get(tok), 502)

    def test_active_without_jwt_gives_502(self):
        tok = self.token_with("nojwt", status=200, content_type="application/json",
                              body='{"active": true, "sub": "x", "scope": "read"}')
        self.assertServerError(self.stack.get(tok), 502)

    def test_204_is_inactive(self):
        tok = self.token_with("204", status=204, body="")
        self.assertDenied(self.stack.get(tok), 401, "invalid_token")

    def test_oversized_answer_gives_502(self):
        tok = self.stack.register("opaque-idpfail-huge-0005", behaviour={"jwt_size": 70000})
        self.assertServerError(self.stack.get(tok), 502)

    def test_errors_are_not_cached(self):
        tok = self.token_with("nocache", status=503)
        self.assertEqual(self.stack.get(tok).status, 503)
        self.assertEqual(self.stack.get(tok).status, 503)
        self.assertEqual(self.stack.idp_calls(tok), 2)
        # once the IdP recovers, the very next request succeeds
        self.stack.register(tok)
        self.assertEqual(self.stack.get(tok).status, 200)

    def test_global_outage_then_recovery(self):
        tok = self.stack.register("opaque-idpfail-outage-0002")
        self.stack.idp_mode(status=500)
        try:
            self.assertServerError(self.stack.get(tok), 502)
        finally:
            self.stack.idp_mode()
        self.assertEqual(self.stack.get(tok).status, 200)

    def test_hung_idp_times_out_while_cached_token_is_fast(self):
        cached = self.stack.register("opaque-idpfail-cached-0003")
        self.assertEqual(self.stack.get(cached).status, 200)
        calls_cached = self.stack.idp_calls(cached)
        slow = self.stack.register("opaque-idpfail-slow-0004")
        self.stack.idp_mode(delay_ms=2600)  # beyond the agent's 2s introspection timeout
        result = {}

        def slow_request():
            t0 = time.monotonic()
            result["r"] = self.stack.get(slow)
            result["elapsed"] = time.monotonic() - t0

        t = threading.Thread(target=slow_request)
        try:
            t.start()
            harness.wait_until(lambda: self.stack.idp_stats()["in_flight"] >= 1, 5,
                               "the slow introspection to start")
            t0 = time.monotonic()
            r = self.stack.get(cached)
            fast = time.monotonic() - t0
            self.assertEqual(r.status, 200)
            self.assertLess(fast, 0.5, "a cached token waited for the hung IdP")
            self.assertEqual(self.stack.idp_calls(cached), calls_cached)
            t.join(10)
        finally:
            self.stack.idp_mode()
            t.join(10)
        self.assertServerError(result["r"], 502)
        # the agent's own timeout (2s) answered, not HAProxy's SPOE timeout (3s, would be 503)
        self.assertGreater(result["elapsed"], 1.5)
        self.assertLess(result["elapsed"], 2.9)


class WrongSecretTest(harness.StackTestCase):
    STACK_ARGS = {"agent_secret": "not-the-right-secret"}

    def test_wrong_client_secret_gives_502(self):
        tok = self.stack.register("opaque-wrongsecret-0001")
        r = self.stack.get(tok)
        self.assertDenied(r, 502)
        self.assertEqual(r.json(), SERVER_ERROR)
        self.assertGreaterEqual(self.stack.idp_calls(tok), 1)


class ClientSecretPostTest(harness.StackTestCase):
    STACK_ARGS = {"client_auth": "post"}

    def test_client_secret_post_accepted(self):
        tok = self.stack.register("opaque-secretpost-0001")
        self.assertEqual(self.stack.get(tok).status, 200)


class UnreachableIdpTest(harness.StackTestCase):
    STACK_ARGS = {"idp_url": "http://127.0.0.1:%d/introspect" % harness.free_port()}

    def test_unreachable_idp_gives_502(self):
        self.stack.secrets.add("opaque-unreachable-0001")
        t0 = time.monotonic()
        r = self.stack.get("opaque-unreachable-0001")
        self.assertDenied(r, 502)
        self.assertEqual(r.json(), SERVER_ERROR)
        self.assertLess(time.monotonic() - t0, 2.5)


if __name__ == "__main__":
    harness.run()
