"""node-oidc-provider (tests/servers/oidc/idp.mjs) and the jose backend (backend.mjs) for the
integration tests: starting them on free loopback ports (their "READY <port>" line, never a fixed
sleep) and the OAuth calls a test makes (client credentials, introspection, revocation).

Environment: PTA_NODE, the node binary (default: node on PATH). The npm packages come from
`npm ci --prefix tests/servers/oidc` (contrib/install-deps.sh test runs it). Standard library only.
"""

import base64
import json
import os
import shutil
import unittest
import urllib.parse

import harness

OIDC_DIR = os.path.join(harness.SOURCE_DIR, "tests", "servers", "oidc")
NODE = os.environ.get("PTA_NODE") or shutil.which("node") or shutil.which("nodejs") or "node"

# The fixed test clients of idp.mjs.
GATEWAY = ("gateway", "gateway-secret")          # plain RFC 7662 JSON answers
GATEWAY_JWT = ("gateway-jwt", "gateway-jwt-secret")  # RFC 9701 answers
APP = ("app", "app-secret")                      # may ask read write admin
APP2 = ("app2", "app2-secret")                   # may ask read only

JWT_INTROSPECTION = "application/token-introspection+jwt"


def require_node():
    """Fails (not skips) when node or the npm packages are missing: CI installs both, and a test
    that silently skips would hide that the identity-server tests never ran."""
    if not (os.path.isabs(NODE) and os.access(NODE, os.X_OK)) and not shutil.which(NODE):
        raise RuntimeError("node not found (install nodejs: contrib/install-deps.sh test)")
    if not os.path.isdir(os.path.join(OIDC_DIR, "node_modules", "oidc-provider")):
        raise RuntimeError("npm packages missing: npm ci --prefix tests/servers/oidc "
                           "(contrib/install-deps.sh test does it)")


def start_node(name, script, args, logdir):
    """Starts tests/servers/oidc/<script>; returns (Proc, port from its READY line)."""
    require_node()
    p = harness.Proc(name, [NODE, os.path.join(OIDC_DIR, script)] + list(args), logdir)

    def ready():
        p.check_alive()
        for line in p.log_text().splitlines():
            if line.startswith("READY "):
                return int(line.split()[1])
        return None
    return p, harness.wait_until(ready, 30, name + " READY")


def b64url_json(part):
    return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))


def jwt_parts(jwt):
    h, p, _ = jwt.split(".")
    return b64url_json(h), b64url_json(p)


class OidcIdp:
    """A running node-oidc-provider."""

    def __init__(self, logdir, ttl=600, gateway_id=None, gateway_secret_file=None):
        args = ["--port", "0", "--ttl", str(ttl)]
        if gateway_id:
            args += ["--gateway-id", gateway_id, "--gateway-secret-file", gateway_secret_file]
        self.proc, self.port = start_node("oidc-idp", "idp.mjs", args, logdir)
        self.issuer = "http://127.0.0.1:%d" % self.port
        self.introspection_url = self.issuer + "/token/introspection"

    def stop(self):
        self.proc.stop()

    def _post(self, path, client, form, accept="application/json"):
        body = urllib.parse.urlencode(form).encode()
        headers = [("Authorization", harness.basic_auth(*client)),
                   ("Content-Type", "application/x-www-form-urlencoded"), ("Accept", accept)]
        return harness.http_request(self.port, "POST", path, headers, body)

    def token(self, client=APP, scope="read"):
        """A client-credentials access token (opaque); fails the caller on an error answer."""
        r = self._post("/token", client, {"grant_type": "client_credentials", "scope": scope})
        if r.status != 200:
            raise AssertionError("token request failed: %r" % r)
        return r.json()["access_token"]

    def token_response(self, client=APP, scope="read"):
        return self._post("/token", client, {"grant_type": "client_credentials", "scope": scope})

    def introspect(self, token, client=GATEWAY, accept="application/json"):
        return self._post("/token/introspection", client, {"token": token}, accept)

    def revoke(self, token, client=APP):
        r = self._post("/token/revocation", client, {"token": token})
        if r.status != 200:
            raise AssertionError("revocation failed: %r" % r)


class JoseBackend:
    """The API behind HAProxy: verifies the forwarded JWT against a JWKS URL with jose."""

    def __init__(self, logdir, jwks_url, issuer, audience):
        self.proc, self.port = start_node(
            "jose-backend", "backend.mjs",
            ["--port", "0", "--jwks-url", jwks_url, "--issuer", issuer, "--audience", audience],
            logdir)

    def stop(self):
        self.proc.stop()
