#!/usr/bin/python3
"""contrib/demo/run-demo.sh --check works end to end (with the agent under test, on free ports,
no apt step when everything is installed) and leaves no process behind; when it builds, it builds
in its own tree (build-demo/), never in the build/ tree the test suite configured."""

import os
import signal
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

SCRIPT = os.path.join(harness.SOURCE_DIR, "contrib", "demo", "run-demo.sh")


class DemoTest(unittest.TestCase):

    def setUp(self):
        harness.require_binaries()
        self.ports = {name: harness.free_port() for name in
                      ("DEMO_PORT", "DEMO_BACKEND_PORT", "DEMO_AGENT_PORT", "DEMO_IDP_PORT")}
        self.env = dict(os.environ, PHANTOM_AGENT_BIN=harness.AGENT, HAPROXY_BIN=harness.HAPROXY,
                        PYTHON=harness.PYTHON, **{k: str(v) for k, v in self.ports.items()})
        self.log = os.path.join(harness.tempfile.mkdtemp(prefix="pta-demo-"), "demo.log")

    def start(self, *args):
        """The script in its own session, so that a failed test can stop all it started."""
        self.out = open(self.log, "wb")
        p = subprocess.Popen(["bash", SCRIPT] + list(args), env=self.env, stdin=subprocess.DEVNULL,
                             stdout=self.out, stderr=subprocess.STDOUT, start_new_session=True)
        self.addCleanup(self.kill_group, p)
        return p

    def kill_group(self, p):
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait(10)
        self.out.close()
        harness.shutil.rmtree(os.path.dirname(self.log), ignore_errors=True)

    def output(self):
        with open(self.log, encoding="utf-8", errors="replace") as f:
            return f.read()

    def assertPortsClosed(self):
        for name, port in self.ports.items():
            self.assertFalse(harness.port_open(port), "%s %d still open" % (name, port))

    def test_demo_check_mode(self):
        p = self.start("--check")
        self.assertEqual(p.wait(120), 0, self.output())
        out = self.output()
        self.assertEqual(out.count("\nok "), 5, out)
        self.assertNotIn("FAIL", out)
        self.assertIn("curl -i -H 'Authorization: Bearer demo-", out)
        self.assertRegex(out, r"(?i)authorization: bearer eyJ")  # the backend got a JWT
        self.assertPortsClosed()

    def test_ctrl_c_stops_everything(self):
        p = self.start()
        harness.wait_until(lambda: p.poll() is None and "press Ctrl-C" in self.output(), 120,
                           "the demo to be ready")
        os.killpg(p.pid, signal.SIGINT)  # what a terminal does on Ctrl-C
        self.assertEqual(p.wait(30), 0, self.output())
        self.assertIn("stopping", self.output())
        self.assertPortsClosed()

    def test_builds_in_its_own_tree(self):
        """A stand-in cmake on PATH records what the demo asks for and "builds" by copying the
        agent under test, so the demo's own build step runs without a real build."""
        tmp = os.path.dirname(self.log)
        bindir = os.path.join(tmp, "bin")
        os.mkdir(bindir)
        calls = os.path.join(tmp, "cmake-calls")
        with open(os.path.join(bindir, "cmake"), "w") as f:
            f.write('#!/bin/sh\necho "$@" >> "%s"\n'
                    'if [ "$1" = --build ]; then mkdir -p "$2" && cp "%s" "$2/"; fi\n'
                    % (calls, harness.AGENT))
        os.chmod(os.path.join(bindir, "cmake"), 0o755)
        demo_dir = os.path.join(harness.SOURCE_DIR, "build-demo")
        existed = os.path.exists(demo_dir)
        if not existed:
            self.addCleanup(harness.shutil.rmtree, demo_dir, True)
        del self.env["PHANTOM_AGENT_BIN"]
        self.env["PATH"] = bindir + os.pathsep + self.env["PATH"]
        self.env.pop("BUILD_DIR", None)
        p = self.start("--check")
        self.assertEqual(p.wait(120), 0, self.output())
        with open(calls) as f:
            lines = f.read().splitlines()
        self.assertEqual(len(lines), 2, lines)
        self.assertIn("-B %s " % demo_dir, lines[0] + " ")
        self.assertEqual(lines[1].split()[:2], ["--build", demo_dir])
        self.assertNotIn(os.path.join(harness.SOURCE_DIR, "build") + " ", " ".join(lines) + " ")
        self.assertPortsClosed()


if __name__ == "__main__":
    harness.run()
