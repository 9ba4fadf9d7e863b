"""Integration test harness: starts the test IdP, the echo backend, phantom-token-agent and HAProxy
(with the very haproxy.cfg and SPOE config users copy), waits until each is ready by checking it
(never by sleeping a fixed time), and gives tests an HTTP client that controls headers exactly.

Environment:
  PTA_AGENT       the agent binary      (default /tmp/build-lead/phantom-token-agent)
  PTA_HAPROXY     the HAProxy binary    (default /usr/sbin/haproxy)
  PTA_SOURCE_DIR  the repository root   (default: two levels above this file)
  PTA_KEEP_LOGS   set to keep the temporary directory with every process's output

Every process's stdout and stderr go to <tmpdir>/<name>.log, so tests can grep logs. Everything
started is stopped by Stack.stop(), and by an atexit hook should a test die half-way.
Standard library only.
"""

import atexit
import base64
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import http.client
import unittest

SOURCE_DIR = os.path.abspath(os.environ.get("PTA_SOURCE_DIR")
                             or os.path.join(os.path.dirname(__file__), "..", ".."))
AGENT = os.environ.get("PTA_AGENT") or "/tmp/build-lead/phantom-token-agent"
HAPROXY = os.environ.get("PTA_HAPROXY") or "/usr/sbin/haproxy"
PYTHON = sys.executable or "/usr/bin/python3"
IDP_PY = os.path.join(SOURCE_DIR, "tests", "servers", "idp.py")
ECHO_PY = os.path.join(SOURCE_DIR, "tests", "servers", "echo_backend.py")
HAPROXY_CFG = os.path.join(SOURCE_DIR, "haproxy-conf", "haproxy.cfg")
SPOE_CONF = os.path.join(SOURCE_DIR, "spoe", "phantom-token.conf")

CLIENT_ID = "phantom-agent"
CLIENT_SECRET = "s3cret:with&odd=chars+and spaces"  # exercises RFC 6749 2.3.1 form-encoding

_live = []  # every Proc not yet stopped, for the atexit hook
_announced = []  # HAProxy binaries whose version this process already printed


def haproxy_version(path=None):
    """(version string, None) of an HAProxy binary, e.g. ("3.4.0-64a335366", None), or
    (None, reason) when it cannot run here (absent, a runtime library missing)."""
    path = path or HAPROXY
    if not os.access(path, os.X_OK):
        return None, "not found at %s" % path
    try:
        p = subprocess.run([path, "-v"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           timeout=10)
    except (OSError, subprocess.TimeoutExpired) as e:
        return None, "%s cannot run: %s" % (path, e)
    out = p.stdout.decode("utf-8", "replace")
    first = out.splitlines()[0] if out else ""
    if p.returncode != 0 or not first.startswith("HAProxy version "):
        return None, "%s cannot run here: %s" % (path, first or "exit %d" % p.returncode)
    return first.split()[2], None


def haproxy_version_tuple(path=None):
    """(major, minor) of an HAProxy binary, e.g. (3, 4); (0, 0) when it cannot run."""
    v, _ = haproxy_version(path)
    try:
        return tuple(int(x) for x in v.split("-")[0].split(".")[:2])
    except (AttributeError, ValueError):
        return (0, 0)


def announce_haproxy(path=None):
    """Prints once per process which HAProxy the tests drive, so each run of the suite says it."""
    path = path or HAPROXY
    if path in _announced:
        return
    _announced.append(path)
    v, why = haproxy_version(path)
    sys.stderr.write("integration: HAProxy %s (%s)\n" % (v, path) if v else
                     "integration: HAProxy %s\n" % why)


def require_binaries(testcase_cls=None):
    """Skip (not fail) when the agent or HAProxy is not built/installed yet."""
    for path, what in ((AGENT, "agent (PTA_AGENT)"), (HAPROXY, "haproxy (PTA_HAPROXY)")):
        if not os.access(path, os.X_OK):
            raise unittest.SkipTest("%s not found at %s" % (what, path))
    announce_haproxy()


def free_port():
    """A port nobody listens on right now (the kernel picks it; we close and reuse it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_open(port, host="127.0.0.1"):
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def wait_until(predicate, timeout, what, interval=0.05):
    """Polls predicate until it returns a truthy value; fails with what after timeout seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError("timed out after %.1fs waiting for %s" % (timeout, what))
        time.sleep(interval)


def token_id(token):
    """The 12-hex SHA-256 prefix the IdP's stats (and the agent's logs) use for a token."""
    return hashlib.sha256(token.encode()).hexdigest()[:12]


class Proc:
    """One child process whose output goes to a log file."""

    def __init__(self, name, argv, logdir, env=None):
        self.name = name
        self.argv = argv
        self.log_path = os.path.join(logdir, name + ".log")
        self._log = open(self.log_path, "ab")
        self.popen = subprocess.Popen(argv, stdout=self._log, stderr=subprocess.STDOUT,
                                      stdin=subprocess.DEVNULL, env=env, start_new_session=True)
        _live.append(self)

    @property
    def pid(self):
        return self.popen.pid

    def alive(self):
        return self.popen.poll() is None

    def log_text(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def check_alive(self):
        if not self.alive():
            raise RuntimeError("%s exited with %s; its log:\n%s"
                               % (self.name, self.popen.returncode, self.log_text()[-4000:]))
        return True

    def stop(self, sig=signal.SIGTERM, timeout=5):
        """Stops this process (and only it): the signal, then SIGKILL if it lingers."""
        if self.alive():
            try:
                self.popen.send_signal(sig)
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(5)
        self._log.close()
        if self in _live:
            _live.remove(self)
        return self.popen.returncode


def start_py_server(name, argv, logdir):
    """Starts tests/servers/<x>.py with --port 0; returns (Proc, the port from its READY line)."""
    p = Proc(name, [PYTHON] + argv, logdir)

    def ready():
        p.check_alive()
        for line in p.log_text().splitlines():
            if line.startswith("READY "):
                return int(line.split()[1])
        return None
    return p, wait_until(ready, 15, name + " READY")


@atexit.register
def _stop_everything():
    for p in list(_live):
        try:
            p.stop(timeout=2)
        except Exception:  # best effort at exit
            pass


class Response:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers  # [(name, value), ...] in received order
        self.body = body        # bytes

    def header(self, name):
        """The first value of a header (case-insensitive), or None."""
        for k, v in self.headers:
            if k.lower() == name.lower():
                return v
        return None

    def header_all(self, name):
        return [v for k, v in self.headers if k.lower() == name.lower()]

    def json(self):
        return json.loads(self.body)

    def __repr__(self):
        return "<Response %d %r %r>" % (self.status, self.headers, self.body[:300])


def http_request(port, method, path, headers=(), body=None, timeout=15, host="127.0.0.1",
                 tls=None):
    """One request with exactly the given headers ([(name, value), ...], duplicates, order and
    casing kept). Adds Host when absent (HTTP/1.1 requires it) and Content-Length for a body.
    tls: an ssl.SSLContext for HTTPS."""
    if tls is not None:
        conn = http.client.HTTPSConnection(host, port, timeout=timeout, context=tls)
    else:
        conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
        names = {k.lower() for k, _ in headers}
        if "host" not in names:
            conn.putheader("Host", "%s:%d" % (host, port))
        for k, v in headers:
            conn.putheader(k, v)
        if body is not None and "content-length" not in names:
            conn.putheader("Content-Length", str(len(body)))
        conn.endheaders(body)
        resp = conn.getresponse()
        data = resp.read()
        return Response(resp.status, resp.getheaders(), data)
    finally:
        conn.close()


def load(port, conns, total, headers=(), path="/api/data", timeout=15):
    """Sends `total` GET requests over `conns` keep-alive connections (one thread each) as fast as
    they are answered; returns a Counter of statuses (an exception's name for a failed request).
    A bounded load for tests: what it checks is the answers, never how fast they came."""
    import collections
    import threading
    counts = collections.Counter()
    lock = threading.Lock()
    left = [total]
    hdrs = dict(headers)
    hdrs.setdefault("Host", "127.0.0.1:%d" % port)

    def worker():
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
        while True:
            with lock:
                if left[0] <= 0:
                    break
                left[0] -= 1
            try:
                conn.request("GET", path, headers=hdrs)
                r = conn.getresponse()
                r.read()
                status = r.status
                if r.will_close:
                    conn.close()
            except (OSError, http.client.HTTPException) as e:
                status = type(e).__name__
                conn.close()
            with lock:
                counts[status] += 1
        conn.close()

    threads = [threading.Thread(target=worker) for _ in range(conns)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return counts


def read_response(f, method="GET"):
    """Reads one HTTP/1.1 response from a binary file object (for pipelined requests)."""
    line = f.readline()
    if not line:
        raise ConnectionError("connection closed before a response")
    status = int(line.split()[1])
    headers = []
    while True:
        line = f.readline()
        if line in (b"\r\n", b"\n", b""):
            break
        k, _, v = line.decode("latin-1").partition(":")
        headers.append((k.strip(), v.strip()))
    length = 0
    for k, v in headers:
        if k.lower() == "content-length":
            length = int(v)
    body = f.read(length) if length and method != "HEAD" else b""
    return Response(status, headers, body)


def basic_auth(client_id, secret):
    """client_secret_basic as RFC 6749 2.3.1 has it: form-urlencode both, then base64."""
    from urllib.parse import quote_plus
    raw = "%s:%s" % (quote_plus(client_id), quote_plus(secret))
    return "Basic " + base64.b64encode(raw.encode()).decode()


class Stack:
    """IdP + echo backend + agent + HAProxy, wired together on fresh loopback ports.

    agent_args: extra agent options; agent_secret: the secret the agent sends (the IdP always
    expects CLIENT_SECRET); idp_url: overrides the introspection URL (e.g. an unreachable one)."""

    def __init__(self, agent_args=(), agent_secret=CLIENT_SECRET, client_auth="basic",
                 idp_url=None, haproxy_env=None, start_agent=True, idp_args=(), idp_tls=None,
                 haproxy_cfg=None):
        require_binaries()
        self.haproxy_cfg = haproxy_cfg or HAPROXY_CFG  # a variant of the shipped file, for a test
        self.tmpdir = tempfile.mkdtemp(prefix="pta-it-")
        self.procs = {}
        self.secrets = set([CLIENT_SECRET, agent_secret])  # never allowed in any log
        self.agent_args = list(agent_args)
        self.agent_secret = agent_secret
        self.client_auth = client_auth
        self.idp_url = idp_url
        self.haproxy_env = dict(haproxy_env or {})
        self.start_agent_first = start_agent
        self.idp_args = list(idp_args)  # e.g. --tls-cert/--tls-key: then idp_tls is the client
        self.idp_tls = idp_tls          # ssl.SSLContext the harness uses to reach the IdP
        self.agent_port = free_port()
        self.haproxy_port = free_port()
        self.stats_socket = os.path.join(self.tmpdir, "haproxy.sock")
        self.agent_starts = 0
        self.bad_exits = []  # agents that did not exit 0 on SIGTERM (a sanitizer report, a crash)

    # --- lifecycle --------------------------------------------------------------------------

    def start(self):
        try:
            self.idp_port = self._start_py("idp", [IDP_PY, "--port", "0", "--client-id", CLIENT_ID,
                                                   "--secret-file", self._secret_file("idp-secret", CLIENT_SECRET)]
                                          + self.idp_args)
            self.echo_port = self._start_py("echo", [ECHO_PY, "--port", "0"])
            # The kernel may hand the servers (port 0) a port free_port() picked above.
            while self.agent_port in (self.idp_port, self.echo_port):
                self.agent_port = free_port()
            while self.haproxy_port in (self.idp_port, self.echo_port, self.agent_port):
                self.haproxy_port = free_port()
            if self.start_agent_first:
                self.start_agent()
            self.start_haproxy()
            if self.start_agent_first:
                self.wait_agent_up()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self):
        for name in ("haproxy", "agent", "echo", "idp"):
            p = self.procs.pop(name, None)
            if p:
                self._stopped(p, p.stop())
        if os.environ.get("PTA_KEEP_LOGS") or self.bad_exits:
            sys.stderr.write("logs kept in %s\n" % self.tmpdir)
        else:
            shutil.rmtree(self.tmpdir, ignore_errors=True)
        if self.bad_exits:
            raise AssertionError("the agent did not exit cleanly: %s" % self.bad_exits)

    def _stopped(self, p, rc):
        """An agent stopped with SIGTERM must exit 0: under the sanitizers a leak or an error
        report at exit shows up only as its exit status."""
        if p.name.startswith("agent") and rc != 0 and not getattr(p, "killed", False):
            self.bad_exits.append((p.name, rc, p.log_text()[-3000:]))

    def _secret_file(self, name, content):
        path = os.path.join(self.tmpdir, name)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(content)
        return path

    def _start_py(self, name, argv):
        """Starts one of the Python servers with --port 0 and reads READY <port> from its log."""
        p, port = start_py_server(name, argv, self.tmpdir)
        self.procs[name] = p
        return port

    @property
    def introspection_url(self):
        scheme = "https" if self.idp_tls else "http"
        return self.idp_url or "%s://127.0.0.1:%d/introspect" % (scheme, self.idp_port)

    def agent_argv(self):
        return [AGENT, "--listen", "127.0.0.1:%d" % self.agent_port, "--log-level", "debug",
                "--introspection-url", self.introspection_url, "--client-id", CLIENT_ID,
                "--client-secret-file", self._secret_file("agent-secret", self.agent_secret),
                "--client-auth", self.client_auth] + self.agent_args

    def start_agent(self):
        """(Re)starts the agent on its port; returns once it accepts connections."""
        old = self.procs.pop("agent", None)
        if old:
            self._stopped(old, old.stop())
        self.agent_starts += 1
        name = "agent" if self.agent_starts == 1 else "agent-%d" % self.agent_starts
        p = Proc(name, self.agent_argv(), self.tmpdir)
        self.procs["agent"] = p
        wait_until(lambda: p.check_alive() and port_open(self.agent_port), 15, "agent listening")
        return p

    def kill_agent(self, sig=signal.SIGKILL):
        p = self.procs.get("agent")
        if p:
            p.killed = sig != signal.SIGTERM  # its exit status is the test's doing
            p.stop(sig)
        wait_until(lambda: not port_open(self.agent_port), 5, "agent port closed")

    def haproxy_environ(self):
        env = dict(os.environ)
        env.update({
            "PHANTOM_BIND": "127.0.0.1:%d" % self.haproxy_port,
            "PHANTOM_BACKEND": "127.0.0.1:%d" % self.echo_port,
            "PHANTOM_AGENT": "127.0.0.1:%d" % self.agent_port,
            "PHANTOM_SPOE_CONF": SPOE_CONF,
            "PHANTOM_STATS_SOCKET": self.stats_socket,
        })
        env.update(self.haproxy_env)
        return env

    def start_haproxy(self):
        p = Proc("haproxy", [HAPROXY, "-db", "-f", self.haproxy_cfg], self.tmpdir,
                 env=self.haproxy_environ())
        self.procs["haproxy"] = p
        # The stats socket answers once every listener is bound; probing it instead of the
        # frontend keeps "<BADREQ>" lines out of the access log.
        wait_until(lambda: p.check_alive() and self._stats_answers(), 15, "haproxy ready")

    def _stats_answers(self):
        try:
            return "Name: HAProxy" in self.haproxy_cmd("show info")
        except OSError:
            return False

    # --- HAProxy stats ------------------------------------------------------------------------

    def haproxy_cmd(self, command):
        """Runs one command on HAProxy's stats socket and returns its output."""
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(5)
            s.connect(self.stats_socket)
            s.sendall(command.encode() + b"\n")
            chunks = []
            while True:
                data = s.recv(65536)
                if not data:
                    break
                chunks.append(data)
        return b"".join(chunks).decode("utf-8", "replace")

    def agent_server_stat(self):
        """The phantom-agents/agent1 row of "show stat" as a dict (status, check_status, ...)."""
        lines = self.haproxy_cmd("show stat").splitlines()
        fields = lines[0].lstrip("# ").split(",")
        for line in lines[1:]:
            row = dict(zip(fields, line.split(",")))
            if row.get("pxname") == "phantom-agents" and row.get("svname") == "agent1":
                return row
        raise AssertionError("no phantom-agents/agent1 in show stat")

    def agent_checked_up(self):
        row = self.agent_server_stat()
        return row["status"] == "UP" and row.get("check_status", "").startswith("L7OK")

    def wait_agent_up(self, timeout=15):
        """Waits until HAProxy's SPOP health check has seen the agent answer."""
        wait_until(self.agent_checked_up, timeout, "agent checked UP by spop-check", 0.1)

    # --- IdP control ----------------------------------------------------------------------------

    def _idp(self, method, path, doc=None):
        body = None if doc is None else json.dumps(doc).encode()
        r = http_request(self.idp_port, method, path,
                         [("Content-Type", "application/json")] if body else [], body,
                         tls=self.idp_tls)
        if r.status != 200:
            raise AssertionError("IdP control %s %s: %r" % (method, path, r))
        return r.json()

    def register(self, token, sub="user", scope="openid read", exp_in=300, claims=None,
                 behaviour=None, client_id="web-client"):
        self.secrets.add(token)
        doc = {"token": token, "sub": sub, "scope": scope, "exp_in": exp_in,
               "client_id": client_id, "claims": claims or {}, "behaviour": behaviour or {}}
        self._idp("POST", "/_control/tokens", doc)
        return token

    def idp_stats(self):
        return self._idp("GET", "/_control/stats")

    def idp_calls(self, token=None):
        st = self.idp_stats()
        return st["calls"] if token is None else st["per_token"].get(token_id(token), 0)

    def idp_mode(self, **mode):
        self._idp("POST", "/_control/mode", mode)

    def idp_reset(self):
        self._idp("POST", "/_control/reset", {})

    # --- client -------------------------------------------------------------------------------

    def request(self, path="/api/data", headers=(), method="GET", body=None, timeout=15):
        r = http_request(self.haproxy_port, method, path, headers, body, timeout)
        self._remember_jwts(r)
        return r

    def get(self, token=None, path="/api/data", extra=(), method="GET"):
        """A request with "Authorization: Bearer <token>" (none when token is None)."""
        headers = [] if token is None else [("Authorization", "Bearer " + token)]
        return self.request(path, headers + list(extra), method)

    def _remember_jwts(self, r):
        """JWTs the backend received must not show up in logs either."""
        if r.status == 200 and r.header("Content-Type") == "application/json" and r.body:
            try:
                for k, v in r.json().get("headers", []):
                    if k.lower() == "authorization" and v.startswith("Bearer "):
                        self.secrets.add(v[7:])
            except (ValueError, AttributeError):
                pass

    def log(self, name):
        p = self.procs.get(name)
        if p:
            return p.log_text()
        path = os.path.join(self.tmpdir, name + ".log")
        return open(path, encoding="utf-8", errors="replace").read() if os.path.exists(path) else ""

    def all_logs(self, prefix):
        """Every log file of that process, restarts included."""
        out = []
        for f in sorted(os.listdir(self.tmpdir)):
            if f.startswith(prefix) and f.endswith(".log"):
                with open(os.path.join(self.tmpdir, f), encoding="utf-8", errors="replace") as fh:
                    out.append(fh.read())
        return "\n".join(out)

    def leaked_secrets(self):
        """Tokens, JWTs and client secrets found in the agent's or HAProxy's logs."""
        logs = self.all_logs("agent") + self.all_logs("haproxy")
        return sorted(s for s in self.secrets if s and len(s) >= 8 and s in logs)


class StackTestCase(unittest.TestCase):
    """A test class sharing one Stack; subclasses set STACK_ARGS. The last test (test_zz_...)
    checks that nothing the class used leaked into the agent's or HAProxy's logs."""

    STACK_ARGS = {}
    stack = None

    @classmethod
    def setUpClass(cls):
        if cls is StackTestCase:
            raise unittest.SkipTest("base class")
        cls.stack = Stack(**cls.STACK_ARGS).start()

    @classmethod
    def tearDownClass(cls):
        if cls.stack:
            cls.stack.stop()

    def test_zz_logs_never_contain_tokens(self):
        self.assertTrue(self.stack.secrets)
        leaked = self.stack.leaked_secrets()
        self.assertEqual(leaked, [], "secrets found in the agent/HAProxy logs")

    # helpers
    def assertDenied(self, r, status, error=None, body_code=None):
        self.assertEqual(r.status, status, r)
        self.assertEqual(r.header("Content-Type"), "application/json", r)
        if body_code:
            self.assertEqual(r.json()["code"], body_code, r)
        if error:
            self.assertIn('error="%s"' % error, r.header("WWW-Authenticate") or "", r)


def run(module_name="__main__"):
    """Entry point for `python3 tests/integration/test_x.py`: exits non-zero on failure."""
    unittest.main(module=module_name, verbosity=2)
