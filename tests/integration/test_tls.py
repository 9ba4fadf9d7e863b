#!/usr/bin/python3
"""Introspection over HTTPS: the IdP's certificate is verified by default (an unknown CA is a
502, never a silent success), --ca-file trusts a private CA, --tls-insecure-skip-verify is an
explicit, logged opt-out, and mutual TLS presents --client-cert/--client-key."""

import os
import ssl
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402


def openssl(*args, cwd):
    subprocess.run(["openssl"] + list(args), cwd=cwd, check=True, capture_output=True, timeout=60)


def make_pki(d):
    """A private CA, a server certificate for 127.0.0.1 and a client certificate, all P-256."""
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]
    openssl("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
            "-subj", "/CN=phantom test CA", cwd=d)
    for name, ext in (("server", "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n"),
                      ("client", "extendedKeyUsage=clientAuth\n")):
        with open(os.path.join(d, name + ".ext"), "w") as f:
            f.write(ext)
        openssl("req", *ec, "-keyout", name + ".key", "-out", name + ".csr",
                "-subj", "/CN=" + name, cwd=d)
        openssl("x509", "-req", "-in", name + ".csr", "-CA", "ca.pem", "-CAkey", "ca.key",
                "-CAcreateserial", "-out", name + ".pem", "-days", "2", "-extfile", name + ".ext",
                cwd=d)
    return {n: os.path.join(d, n) for n in ("ca.pem", "server.pem", "server.key", "client.pem",
                                             "client.key")}


class TLS(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        harness.require_binaries()
        cls.pki_dir = tempfile.mkdtemp(prefix="pta-pki-")
        cls.pki = make_pki(cls.pki_dir)

    @classmethod
    def tearDownClass(cls):
        harness.shutil.rmtree(cls.pki_dir, ignore_errors=True)

    def stack(self, agent_args, mtls=False):
        p = self.pki
        idp_args = ["--tls-cert", p["server.pem"], "--tls-key", p["server.key"]]
        client = ssl.create_default_context(cafile=p["ca.pem"])  # the harness's own control calls
        if mtls:
            idp_args += ["--tls-client-ca", p["ca.pem"]]
            client.load_cert_chain(p["client.pem"], p["client.key"])
        s = harness.Stack(agent_args=agent_args, idp_args=idp_args, idp_tls=client)
        self.addCleanup(s.stop)
        return s.start()

    def exchange(self, s, name):
        tok = s.register("tls-token-" + name)
        return s.get(tok)

    def test_verification_is_on_by_default(self):
        s = self.stack([])
        r = self.exchange(s, "default")
        self.assertEqual(r.status, 502, r)
        self.assertRegex(s.log("agent"), r"(?i)(tls|ssl|certificate)")

    def test_ca_file_trusts_a_private_ca(self):
        s = self.stack(["--ca-file", self.pki["ca.pem"]])
        r = self.exchange(s, "ca-file")
        self.assertEqual(r.status, 200, r)
        self.assertEqual(s.idp_calls(), 1)

    def test_insecure_skip_verify_is_explicit_and_logged(self):
        s = self.stack(["--tls-insecure-skip-verify"])
        self.assertEqual(self.exchange(s, "insecure").status, 200)
        self.assertIn("TLS certificate verification is OFF", s.log("agent"))

    def test_mutual_tls(self):
        p = self.pki
        s = self.stack(["--ca-file", p["ca.pem"], "--client-cert", p["client.pem"],
                        "--client-key", p["client.key"]], mtls=True)
        self.assertEqual(self.exchange(s, "mtls").status, 200)

    def test_mutual_tls_without_a_client_certificate_fails_closed(self):
        s = self.stack(["--ca-file", self.pki["ca.pem"]], mtls=True)
        self.assertEqual(self.exchange(s, "no-client-cert").status, 502)


if __name__ == "__main__":
    harness.run()
