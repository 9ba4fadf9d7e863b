#!/usr/bin/python3
"""The agent's token cache seen from outside: repeated requests do not reach the IdP, concurrent
requests for a new token share one introspection, invalid tokens are negatively cached, and
expiry (the token's exp, the IdP's max-age) is honoured. Asserted on the IdP's call counters."""

import base64
import json
import os
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402


def jwt_claims(response):
    """The claims of the JWT the echo backend received."""
    for k, v in response.json()["headers"]:
        if k.lower() == "authorization":
            payload = v[len("Bearer "):].split(".")[1]
            return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    raise AssertionError("no Authorization header reached the backend")


def parallel(n, fn):
    """Runs fn(i) in n threads started together; returns the results in order."""
    results = [None] * n
    barrier = threading.Barrier(n)

    def run(i):
        barrier.wait()
        try:
            results[i] = fn(i)
        except Exception as e:  # reported as a result, so the assertion names it
            results[i] = e

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return results


class CacheTest(harness.StackTestCase):

    def test_second_request_is_a_cache_hit(self):
        tok = self.stack.register("opaque-cache-hit-0001")
        self.assertEqual(self.stack.get(tok).status, 200)
        self.assertEqual(self.stack.idp_calls(tok), 1)
        for _ in range(5):
            self.assertEqual(self.stack.get(tok).status, 200)
        self.assertEqual(self.stack.idp_calls(tok), 1)

    def test_scheme_spelling_shares_the_cache_entry(self):
        tok = self.stack.register("opaque-cache-spelling-0002")
        self.assertEqual(self.stack.get(tok).status, 200)
        r = self.stack.request(headers=[("Authorization", "bearer    " + tok)])
        self.assertEqual(r.status, 200)
        self.assertEqual(self.stack.idp_calls(tok), 1)

    def test_100_concurrent_requests_one_introspection(self):
        tok = self.stack.register("opaque-cache-burst-0003", behaviour={"delay_ms": 300})
        results = parallel(100, lambda i: self.stack.get(tok))
        statuses = [getattr(r, "status", r) for r in results]
        self.assertEqual(statuses, [200] * 100)
        self.assertEqual(self.stack.idp_calls(tok), 1)
        # every waiter got the same JWT
        self.assertEqual(len({jwt_claims(r)["jti"] for r in results}), 1)

    def test_unknown_token_negatively_cached(self):
        self.stack.secrets.add("opaque-cache-unknown-0004")
        for _ in range(3):
            self.assertEqual(self.stack.get("opaque-cache-unknown-0004").status, 401)
        self.assertEqual(self.stack.idp_calls("opaque-cache-unknown-0004"), 1)

    def test_idp_max_age_bounds_the_cache(self):
        tok = self.stack.register("opaque-cache-maxage-0005",
                                  behaviour={"cache_control": "max-age=1"})
        self.assertEqual(self.stack.get(tok).status, 200)
        self.assertEqual(self.stack.get(tok).status, 200)
        self.assertEqual(self.stack.idp_calls(tok), 1)
        t0 = time.monotonic()

        def reintrospected():
            self.assertEqual(self.stack.get(tok).status, 200)
            return self.stack.idp_calls(tok) >= 2
        harness.wait_until(reintrospected, 4, "re-introspection after max-age=1", 0.1)
        self.assertGreater(time.monotonic() - t0, 0.3)


class ExpiryTest(harness.StackTestCase):
    """With --cache-exp-skew 0s a token is accepted until its exp and refused right after."""

    STACK_ARGS = {"agent_args": ["--cache-exp-skew", "0s"]}

    def test_expired_token_refused(self):
        tok = self.stack.register("opaque-expiry-0001", exp_in=2)
        r = self.stack.get(tok)
        self.assertEqual(r.status, 200)
        exp = jwt_claims(r)["exp"]
        self.assertEqual(self.stack.idp_calls(tok), 1)

        def refused():
            r = self.stack.get(tok)
            if r.status == 200:
                return False
            return r
        r = harness.wait_until(refused, exp - time.time() + 3, "401 after exp", 0.1)
        self.assertGreaterEqual(time.time(), exp - 0.1, "refused before exp")
        self.assertLess(time.time(), exp + 1.5, "accepted well after exp")
        self.assertDenied(r, 401, "invalid_token")


if __name__ == "__main__":
    harness.run()
