#!/usr/bin/python3
"""contrib/demo/run-demo.sh --check works end to end (with the agent under test, on free ports,
no apt step when everything is installed) and leaves no process behind."""

import os
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

SCRIPT = os.path.join(harness.SOURCE_DIR, "contrib", "demo", "run-demo.sh")


class DemoTest(unittest.TestCase):

    def test_demo_check_mode(self):
        harness.require_binaries()
        ports = {name: harness.free_port() for name in
                 ("DEMO_PORT", "DEMO_BACKEND_PORT", "DEMO_AGENT_PORT", "DEMO_IDP_PORT")}
        env = dict(os.environ, PHANTOM_AGENT_BIN=harness.AGENT, HAPROXY_BIN=harness.HAPROXY,
                   PYTHON=harness.PYTHON, **{k: str(v) for k, v in ports.items()})
        proc = subprocess.run(["bash", SCRIPT, "--check"], env=env, stdin=subprocess.DEVNULL,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=120)
        out = proc.stdout.decode("utf-8", "replace")
        self.assertEqual(proc.returncode, 0, out)
        self.assertEqual(out.count("\nok "), 5, out)
        self.assertNotIn("FAIL", out)
        self.assertIn("curl -i -H 'Authorization: Bearer demo-", out)
        self.assertRegex(out, r"(?i)authorization: bearer eyJ")  # the backend got a JWT
        for name, port in ports.items():
            self.assertFalse(harness.port_open(port), "%s %d still open after --check" % (name, port))


if __name__ == "__main__":
    harness.run()
