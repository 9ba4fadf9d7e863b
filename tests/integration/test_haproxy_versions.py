#!/usr/bin/env python3
"""The shipped haproxy-conf/haproxy.cfg + spoe/phantom-token.conf (and the benchmark's configs)
load with no alert and no warning on every HAProxy at hand: PTA_HAPROXY, /usr/sbin/haproxy, the
binaries listed in PTA_HAPROXY_EXTRA and those in ../shared/haproxy/*/haproxy beside the
repository (HAProxy 3.x builds used by CI). A version that is not there is reported as skipped.
HAProxy prints NOTICE lines (version, path) and, run as root, a notice about it: both allowed."""

import glob
import os
import re
import subprocess
import sys

import harness

CONFIGS = [
    harness.HAPROXY_CFG,
    os.path.join(harness.SOURCE_DIR, "contrib", "bench", "haproxy-plain.cfg"),
]
# Lines a correct config may still produce: version/path notices, root and chroot remarks.
ALLOWED = re.compile(r"NOTICE|root|chroot|uid 0|Configuration file is valid", re.I)


def candidate_binaries():
    """Every HAProxy binary the environment names or the CI layout provides, without duplicates."""
    paths = [harness.HAPROXY, "/usr/sbin/haproxy"]
    paths += os.environ.get("PTA_HAPROXY_EXTRA", "").split()
    paths += sorted(glob.glob(os.path.join(harness.SOURCE_DIR, "..", "shared", "haproxy", "*",
                                           "haproxy")))
    seen, out = set(), []
    for p in paths:
        real = os.path.realpath(p)
        if real not in seen:
            seen.add(real)
            out.append(p)
    return out


def check_env():
    env = dict(os.environ, PHANTOM_SPOE_CONF=harness.SPOE_CONF, BENCH_BACKEND_BIND="127.0.0.1:1")
    for k in ("PHANTOM_REQUIRED_SCOPES", "PHANTOM_STATS_SOCKET"):
        env.pop(k, None)
    return env


class ShippedFilesLoad(harness.unittest.TestCase):
    def test_every_haproxy_loads_the_shipped_files_cleanly(self):
        checked = 0
        for binary in candidate_binaries():
            version, why = harness.haproxy_version(binary)
            if version is None:
                sys.stderr.write("skipped: HAProxy %s\n" % why)
                continue
            for cfg in CONFIGS:
                with self.subTest(haproxy=version, cfg=os.path.basename(cfg)):
                    p = subprocess.run([binary, "-c", "-f", cfg], env=check_env(),
                                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                       text=True, timeout=30)
                    bad = [line for line in p.stdout.splitlines()
                           if line.strip() and not ALLOWED.search(line)]
                    self.assertEqual(p.returncode, 0, "HAProxy %s: %s" % (version, p.stdout))
                    self.assertEqual(bad, [], "HAProxy %s, %s" % (version, cfg))
            sys.stderr.write("checked: HAProxy %s (%s)\n" % (version, binary))
            checked += 1
        if checked == 0:
            raise harness.unittest.SkipTest("no runnable HAProxy found")


class VariableNames(harness.unittest.TestCase):
    """HAProxy 3.5 refuses variable names of 64 bytes or more ("scope.prefix.name"): every name
    the agent sets (agent/decision.h) and the shipped files use stays below."""

    def test_every_variable_name_is_short_enough(self):
        with open(harness.SPOE_CONF) as f:
            spoe = f.read()
        prefix = re.search(r"^\s*option var-prefix (\S+)", spoe, re.M).group(1)
        with open(os.path.join(harness.SOURCE_DIR, "agent", "decision.h")) as f:
            agent_vars = re.findall(r'#define VAR_\w+ "(\w+)"', f.read())
        self.assertIn("www_authenticate", agent_vars)
        names = ["txn.%s.%s" % (prefix, v) for v in agent_vars + ["spoe_error"]]
        with open(harness.HAPROXY_CFG) as f:
            names += re.findall(r"\b((?:txn|req|sess|proc)\.[\w.]+)", f.read() + spoe)
        too_long = [n for n in names if len(n) >= 64]
        self.assertEqual(too_long, [])
        self.assertGreater(len(set(names)), 10)


if __name__ == "__main__":
    harness.run()
