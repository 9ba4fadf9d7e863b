#!/usr/bin/python3
"""Packaging: the RPM (contrib/rpm/build-rpm.sh and its own checks), the file list of
`cmake --install` (cmake/install.cmake, the single source of that list) and the CPack .deb.

Environment: PTA_SOURCE_DIR (the repository root). The builds happen in temporary directories,
from the source tree, with -j2; nothing is written into the repository or the ctest build tree.
Skips the RPM test when rpmbuild is missing (Debian: apt-get install rpm) and the .deb test when
dpkg-deb or cpack is missing. Standard library only.
"""

import os
import re
import shutil
import subprocess
import tempfile
import unittest

SOURCE_DIR = os.path.abspath(os.environ.get("PTA_SOURCE_DIR")
                             or os.path.join(os.path.dirname(__file__), "..", ".."))
BUILD_RPM = os.path.join(SOURCE_DIR, "contrib", "rpm", "build-rpm.sh")
JOBS = "2"

# What `cmake --install` puts under DESTDIR with the prefix /usr: every regular file, no more.
INSTALLED = {
    "usr/sbin/phantom-token-agent",
    "etc/phantom-token-agent/agent.conf",
    "etc/haproxy/phantom-token.conf",
    "usr/lib/systemd/system/phantom-token-agent.service",
    "usr/share/man/man8/phantom-token-agent.8",
    "usr/share/doc/phantom-token-agent/README.md",
    "usr/share/doc/phantom-token-agent/LICENSE",
    "usr/share/doc/phantom-token-agent/examples/haproxy.cfg",
}
# Installed files that are copies of a repository file.
SOURCES = {
    "etc/phantom-token-agent/agent.conf": "contrib/agent.conf",
    "etc/haproxy/phantom-token.conf": "spoe/phantom-token.conf",
    "usr/lib/systemd/system/phantom-token-agent.service":
        "contrib/systemd/phantom-token-agent.service",
    "usr/share/man/man8/phantom-token-agent.8": "contrib/phantom-token-agent.8",
    "usr/share/doc/phantom-token-agent/README.md": "README.md",
    "usr/share/doc/phantom-token-agent/LICENSE": "LICENSE",
    "usr/share/doc/phantom-token-agent/examples/haproxy.cfg": "haproxy-conf/haproxy.cfg",
}
CONFFILES = {"/etc/phantom-token-agent/agent.conf", "/etc/haproxy/phantom-token.conf"}


def run(cmd, timeout, **kw):
    proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, timeout=timeout, **kw)
    return proc.returncode, proc.stdout.decode("utf-8", "replace")


def read(path):
    with open(path, "rb") as f:
        return f.read()


def project_version():
    with open(os.path.join(SOURCE_DIR, "CMakeLists.txt"), encoding="utf-8") as f:
        m = re.search(r"project\([^)]*VERSION\s+([0-9.]+)", f.read())
    return m.group(1)


class CMakeBuild:
    """One release build of the source tree (tests off), shared by the install and .deb tests."""
    dir = None

    @classmethod
    def get(cls, tmp):
        if cls.dir is None:
            build = os.path.join(tmp, "build")
            rc, out = run(["cmake", "-S", SOURCE_DIR, "-B", build, "-DPTA_TESTS=OFF",
                           "-DCMAKE_BUILD_TYPE=RelWithDebInfo", "-DCMAKE_INSTALL_PREFIX=/usr"],
                          timeout=120)
            if rc != 0:
                raise AssertionError("cmake configure failed:\n" + out)
            rc, out = run(["cmake", "--build", build, "-j", JOBS], timeout=300)
            if rc != 0:
                raise AssertionError("cmake --build failed:\n" + out[-4000:])
            cls.dir = build
        return cls.dir


class PackagingTest(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="pta-packaging-")

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def test_cmake_install_file_list(self):
        build = CMakeBuild.get(self.tmp)
        dest = os.path.join(self.tmp, "destdir")
        rc, out = run(["cmake", "--install", build, "--prefix", "/usr"], timeout=120,
                      env=dict(os.environ, DESTDIR=dest))
        self.assertEqual(rc, 0, out)
        found = set()
        for root, _dirs, files in os.walk(dest):
            for name in files:
                found.add(os.path.relpath(os.path.join(root, name), dest))
        print("cmake --install:\n  " + "\n  ".join(sorted(found)))
        self.assertEqual(found, INSTALLED)
        for installed, source in SOURCES.items():
            self.assertEqual(read(os.path.join(dest, installed)),
                             read(os.path.join(SOURCE_DIR, source)), installed)
        binary = os.path.join(dest, "usr/sbin/phantom-token-agent")
        self.assertTrue(os.access(binary, os.X_OK))
        rc, out = run([binary, "--version"], timeout=30)
        self.assertEqual(rc, 0, out)
        self.assertEqual(out.splitlines()[0], "phantom-token-agent " + project_version())
        for conf in ("etc/phantom-token-agent/agent.conf", "etc/haproxy/phantom-token.conf"):
            self.assertEqual(os.stat(os.path.join(dest, conf)).st_mode & 0o777, 0o644, conf)

    def test_deb(self):
        cpack, dpkg_deb = shutil.which("cpack"), shutil.which("dpkg-deb")
        if not cpack or not dpkg_deb:
            self.skipTest("cpack or dpkg-deb is missing: the .deb is not built")
        build = CMakeBuild.get(self.tmp)
        out_dir = os.path.join(self.tmp, "deb")
        rc, out = run([cpack, "-G", "DEB", "--config", os.path.join(build, "CPackConfig.cmake"),
                       "-B", out_dir], timeout=300, cwd=build)
        self.assertEqual(rc, 0, out)
        debs = [f for f in os.listdir(out_dir) if f.endswith(".deb")]
        self.assertEqual(len(debs), 1, out)
        deb = os.path.join(out_dir, debs[0])
        print("deb: " + debs[0])
        rc, info = run([dpkg_deb, "--field", deb, "Package", "Depends", "Recommends"], timeout=30)
        self.assertEqual(rc, 0, info)
        self.assertIn("Package: phantom-token-agent", info)
        for dep in ("libev4", "libcurl4", "libjansson4", "libssl3", "libmicrohttpd12"):
            self.assertIn(dep, info)
        rc, contents = run(["sh", "-c", 'dpkg-deb --fsys-tarfile "$1" | tar -t', "sh", deb],
                           timeout=30)
        self.assertEqual(rc, 0, contents)
        paths = {p.lstrip(".").lstrip("/") for p in contents.splitlines()}
        self.assertTrue(INSTALLED <= paths, sorted(INSTALLED - paths))
        control = os.path.join(self.tmp, "control")
        rc, out = run([dpkg_deb, "--control", deb, control], timeout=30)
        self.assertEqual(rc, 0, out)
        with open(os.path.join(control, "conffiles"), encoding="utf-8") as f:
            self.assertEqual(set(f.read().split()), CONFFILES)

    def test_rpm(self):
        if not shutil.which("rpmbuild"):
            self.skipTest("rpmbuild is missing (Debian: apt-get install rpm): the RPM is not "
                          "built")
        if not shutil.which("git") or not os.path.exists(os.path.join(SOURCE_DIR, ".git")):
            self.skipTest("build-rpm.sh packages a git tree; %s is not one" % SOURCE_DIR)
        topdir = os.path.join(self.tmp, "rpm")
        rc, out = run(["bash", BUILD_RPM, "--topdir", topdir, "--jobs", JOBS], timeout=600)
        print(out)
        if rc != 0 and os.path.exists(os.path.join(topdir, "rpmbuild.log")):
            with open(os.path.join(topdir, "rpmbuild.log"), encoding="utf-8",
                      errors="replace") as f:
                print("---- rpmbuild.log (end)\n" + f.read()[-6000:])
        self.assertEqual(rc, 0, out)
        self.assertNotIn("CHECK FAILED", out)
        self.assertIn("build-rpm: all checks passed", out)
        rpm = [line[5:] for line in out.splitlines() if line.startswith("RPM: ")]
        self.assertEqual(len(rpm), 1, out)
        self.assertTrue(os.path.isfile(rpm[0]), rpm[0])
        self.assertTrue(os.path.basename(rpm[0]).startswith(
            "phantom-token-agent-%s-" % project_version()), rpm[0])


if __name__ == "__main__":
    unittest.main(verbosity=2)
