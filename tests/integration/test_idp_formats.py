#!/usr/bin/python3
"""Introspection answer formats: application/jwt (the default, covered everywhere else) and
Keycloak-style JSON ({"active": true, ..., "jwt": "..."}), whether the IdP chooses JSON itself or
the agent asks for it with --accept application/json."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402


def forwarded_jwt(test, r):
    test.assertEqual(r.status, 200, r)
    auth = [v for k, v in r.json()["headers"] if k.lower() == "authorization"]
    test.assertEqual(len(auth), 1)
    test.assertTrue(auth[0].startswith("Bearer eyJ"), auth)
    return auth[0][7:]


class KeycloakJsonTest(harness.StackTestCase):

    def test_keycloak_json_answer_forwards_its_jwt(self):
        tok = self.stack.register("opaque-keycloak-0001", scope="openid admin",
                                  behaviour={"keycloak": True})
        jwt = forwarded_jwt(self, self.stack.get(tok, path="/api/admin/x"))
        self.assertEqual(jwt.count("."), 2)

    def test_keycloak_inactive(self):
        tok = self.stack.register("opaque-keycloak-expired-0002", exp_in=-5,
                                  behaviour={"keycloak": True})
        r = self.stack.get(tok)
        self.assertDenied(r, 401, "invalid_token")

    def test_keycloak_scope_enforced(self):
        tok = self.stack.register("opaque-keycloak-noadmin-0003", scope="openid",
                                  behaviour={"keycloak": True})
        self.assertDenied(self.stack.get(tok, path="/api/admin"), 403, "insufficient_scope")


class AcceptJsonTest(harness.StackTestCase):
    STACK_ARGS = {"agent_args": ["--accept", "application/json"]}

    def test_agent_asking_for_json_gets_keycloak_json(self):
        tok = self.stack.register("opaque-acceptjson-0001")
        forwarded_jwt(self, self.stack.get(tok))
        self.assertEqual(self.stack.get("opaque-acceptjson-unknown-0002").status, 401)
        self.stack.secrets.add("opaque-acceptjson-unknown-0002")


if __name__ == "__main__":
    harness.run()
