#!/usr/bin/python3
"""The shared cache (L2) in Redis, end to end: two agents behind one HAProxy (two servers in the
phantom-agents backend) and one redis-server, all started here on free loopback ports.

- a token is introspected once for the whole fleet (counted at the test IdP), and the agent that
  did not ask forwards the very same JWT (the IdP mints a fresh jti on every call);
- negative answers are shared, IdP errors never;
- an agent restarted with a cold L1 is warm from L2;
- a tampered value, or a value moved under another token's key, is a miss: never forwarded;
- nothing in Redis is readable: no token, JWT, claim, secret or fleet key in keys or values
  (SCAN + GET + DUMP);
- Redis killed mid-run: requests keep being answered correctly; restarted: the agents reconnect;
- Redis asleep (DEBUG SLEEP): no request waits for it past the introspection timeout.
Which agent answers is steered through HAProxy's runtime API (one server in maintenance, its
SPOE connections shut), so nothing depends on how HAProxy happens to spread connections.
Skipped when redis-server is not installed."""

import base64
import hashlib
import os
import re
import shutil
import signal
import socket
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

REDIS = os.environ.get("PTA_REDIS_SERVER") or shutil.which("redis-server") or "/usr/bin/redis-server"
PREFIX = "pta-it:"
FLEET_KEY = "it-fleet-key-" + "7c1d0e5b9a3f4e2d8c6b5a4f3e2d1c0b" * 2
INTROSPECTION_TIMEOUT_S = 2.0
REDIS_TIMEOUT = "100ms"


# ---- a minimal RESP client (standard library only) ---------------------------------------------

class RedisError(Exception):
    pass


class Resp:
    def __init__(self, port, timeout=10):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.f = self.sock.makefile("rb")

    def close(self):
        self.f.close()
        self.sock.close()

    def send(self, *args):
        out = [b"*%d\r\n" % len(args)]
        for a in args:
            a = a if isinstance(a, bytes) else str(a).encode()
            out.append(b"$%d\r\n%s\r\n" % (len(a), a))
        self.sock.sendall(b"".join(out))

    def read(self):
        line = self.f.readline()
        if not line:
            raise ConnectionError("redis closed the connection")
        kind, rest = line[:1], line[1:-2]
        if kind == b"+":
            return rest.decode()
        if kind == b"-":
            raise RedisError(rest.decode())
        if kind == b":":
            return int(rest)
        if kind == b"$":
            n = int(rest)
            if n < 0:
                return None
            data = self.f.read(n + 2)
            return data[:-2]
        if kind == b"*":
            n = int(rest)
            return None if n < 0 else [self.read() for _ in range(n)]
        raise RedisError("bad reply %r" % line)

    def cmd(self, *args):
        self.send(*args)
        return self.read()


class RedisServer:
    def __init__(self, tmpdir):
        self.tmpdir = tmpdir
        self.port = harness.free_port()
        self.proc = None

    def start(self):
        self.proc = harness.Proc("redis", [REDIS, "--port", str(self.port), "--bind", "127.0.0.1",
                                           "--save", "", "--appendonly", "no", "--dir", self.tmpdir,
                                           "--enable-debug-command", "local"], self.tmpdir)
        harness.wait_until(lambda: self.proc.check_alive() and self.ping(), 15, "redis PING")
        return self

    def ping(self):
        try:
            c = Resp(self.port, timeout=1)
            try:
                return c.cmd("PING") == "PONG"
            finally:
                c.close()
        except OSError:
            return False

    def kill(self):
        if self.proc:
            self.proc.stop(signal.SIGKILL)
            self.proc = None

    def cmd(self, *args):
        c = Resp(self.port)
        try:
            return c.cmd(*args)
        finally:
            c.close()

    def keys(self):
        out, cursor = [], "0"
        while True:
            cursor, batch = self.cmd("SCAN", cursor, "COUNT", "1000")
            out += batch
            cursor = cursor.decode()
            if cursor == "0":
                return out


# ---- two agents, one HAProxy, one Redis --------------------------------------------------------

class FleetStack(harness.Stack):
    AGENTS = ("agent", "agent2")

    def __init__(self, **kw):
        super().__init__(**kw)
        self.redis = RedisServer(self.tmpdir)
        self.ports = {"agent": self.agent_port, "agent2": harness.free_port()}
        self.http_ports = {"agent": harness.free_port(), "agent2": harness.free_port()}
        self.fleet_key_file = self._secret_file("fleet.key", FLEET_KEY + "\n")
        self.secrets.add(FLEET_KEY)
        self.starts = {"agent": 0, "agent2": 0}

    def start(self):
        self.redis.start()
        super().start()  # idp, echo, agent, haproxy
        try:
            self.start_named("agent2")
            for name in self.AGENTS:
                self.wait_server_up(name)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self):
        p = self.procs.pop("agent2", None)
        if p:
            self._stopped(p, p.stop())
        self.redis.kill()
        super().stop()

    def argv_for(self, name):
        argv = super().agent_argv()
        argv[argv.index("--listen") + 1] = "127.0.0.1:%d" % self.ports[name]
        return argv + ["--http-listen", "127.0.0.1:%d" % self.http_ports[name],
                       "--introspection-timeout", "%gs" % INTROSPECTION_TIMEOUT_S,
                       "--cache-redis-url", "redis://127.0.0.1:%d/0" % self.redis.port,
                       "--fleet-key-file", self.fleet_key_file,
                       "--cache-redis-prefix", PREFIX, "--cache-redis-timeout", REDIS_TIMEOUT,
                       "--cache-negative-ttl", "60s"]  # outlives the steering between agents

    def agent_argv(self):
        return self.argv_for("agent")

    def start_named(self, name):
        """(Re)starts agent or agent2; returns once it accepts connections."""
        if name == "agent":
            return self.start_agent()
        old = self.procs.pop(name, None)
        if old:
            self._stopped(old, old.stop())
        self.starts[name] += 1
        p = harness.Proc("%s-%d" % (name, self.starts[name]), self.argv_for(name), self.tmpdir)
        self.procs[name] = p
        wait_open = lambda: p.check_alive() and harness.port_open(self.ports[name])  # noqa: E731
        harness.wait_until(wait_open, 15, name + " listening")
        return p

    def start_haproxy(self):
        """The shipped haproxy.cfg with a second server line in phantom-agents."""
        with open(harness.HAPROXY_CFG) as f:
            cfg = f.read()
        m = re.search(r"^(\s*)server agent1 (\S+)(.*)$", cfg, re.M)
        assert m, "no 'server agent1' line in haproxy.cfg"
        line2 = '%sserver agent2 "${PHANTOM_AGENT2}"%s' % (m.group(1), m.group(3))
        cfg = cfg[:m.end()] + "\n" + line2 + cfg[m.end():]
        path = os.path.join(self.tmpdir, "haproxy-fleet.cfg")
        with open(path, "w") as f:
            f.write(cfg)
        self.haproxy_env["PHANTOM_AGENT2"] = "127.0.0.1:%d" % self.ports["agent2"]
        p = harness.Proc("haproxy", [harness.HAPROXY, "-db", "-f", path], self.tmpdir,
                         env=self.haproxy_environ())
        self.procs["haproxy"] = p
        harness.wait_until(lambda: p.check_alive() and self._stats_answers(), 15, "haproxy ready")

    def wait_agent_up(self, timeout=15):
        self.wait_server_up("agent", timeout)

    def server_row(self, name):
        sv = "agent1" if name == "agent" else name
        lines = self.haproxy_cmd("show stat").splitlines()
        fields = lines[0].lstrip("# ").split(",")
        for line in lines[1:]:
            row = dict(zip(fields, line.split(",")))
            if row.get("pxname") == "phantom-agents" and row.get("svname") == sv:
                return row
        raise AssertionError("no phantom-agents/%s in show stat" % sv)

    def wait_server_up(self, name, timeout=15):
        def up():
            row = self.server_row(name)
            return row["status"] == "UP" and row.get("check_status", "").startswith("L7OK")
        harness.wait_until(up, timeout, name + " checked UP", 0.1)

    def route_to(self, name):
        """Sends every following request to one agent: the other in maintenance, its SPOE
        connections shut down."""
        other = "agent2" if name == "agent" else "agent"
        sv = lambda n: "agent1" if n == "agent" else n  # noqa: E731
        self.haproxy_cmd("set server phantom-agents/%s state ready" % sv(name))
        self.wait_server_up(name)
        self.haproxy_cmd("set server phantom-agents/%s state maint" % sv(other))
        self.haproxy_cmd("shutdown sessions server phantom-agents/%s" % sv(other))
        harness.wait_until(lambda: self.server_row(other)["status"] == "MAINT", 5, "maint")

    def metrics(self, name):
        """The agent's Prometheus text as {"name{labels}": value}."""
        r = harness.http_request(self.http_ports[name], "GET", "/metrics")
        assert r.status == 200, r
        out = {}
        for line in r.body.decode().splitlines():
            if line and not line.startswith("#"):
                k, _, v = line.rpartition(" ")
                out[k] = float(v)
        return out

    def metric(self, name, key):
        return self.metrics(name).get(key, 0.0)


def command_calls(redis, name):
    """How many times Redis ran a command since the last CONFIG RESETSTAT."""
    info = redis.cmd("INFO", "commandstats").decode()
    m = re.search(r"^cmdstat_%s:calls=(\d+)" % name, info, re.M)
    return int(m.group(1)) if m else 0


def forwarded_jwt(r):
    for k, v in r.json()["headers"]:
        if k.lower() == "authorization":
            return v[len("Bearer "):]
    raise AssertionError("no Authorization header reached the backend: %r" % r)


L2_HIT = 'phantom_l2_lookups_total{result="hit"}'
L2_TIMEOUT = 'phantom_l2_lookups_total{result="timeout"}'
L2_INVALID_AUTH = 'phantom_l2_invalid_total{reason="auth"}'


@unittest.skipUnless(os.access(REDIS, os.X_OK), "redis-server not installed (%s)" % REDIS)
class L2Test(unittest.TestCase):
    stack = None

    @classmethod
    def setUpClass(cls):
        cls.stack = FleetStack().start()

    @classmethod
    def tearDownClass(cls):
        if cls.stack:
            cls.stack.stop()

    def setUp(self):
        if not self.stack.redis.proc:
            self.stack.redis.start()

    def new_keys(self, before, n=1):
        """The keys written since before; waits for n of them (the agent writes Redis after it
        has answered, so the answer can arrive first)."""
        def found():
            keys = [k for k in self.stack.redis.keys() if k not in before]
            return keys if len(keys) >= n else None
        return harness.wait_until(found, 10, "%d new key(s) in Redis" % n)

    # -- sharing -------------------------------------------------------------------------------

    def test_fleet_introspects_a_token_once(self):
        s = self.stack
        tok = s.register("opaque-l2-fleet-0001", sub="fleet-user-1")
        s.route_to("agent")
        before = set(s.redis.keys())
        r1 = s.get(tok)
        self.assertEqual(r1.status, 200, r1)
        self.assertEqual(s.idp_calls(tok), 1)
        keys = self.new_keys(before)
        self.assertEqual(len(keys), 1, keys)
        self.assertTrue(keys[0].startswith(PREFIX.encode()), keys)
        ttl = s.redis.cmd("PTTL", keys[0])
        self.assertTrue(0 < ttl <= 300 * 1000, ttl)  # the entry's lifetime, at most cache-max-ttl

        hits_before = s.metric("agent2", L2_HIT)
        s.route_to("agent2")
        r2 = s.get(tok)
        self.assertEqual(r2.status, 200, r2)
        self.assertEqual(s.idp_calls(tok), 1, "agent2 asked the IdP although L2 had the token")
        self.assertEqual(forwarded_jwt(r2), forwarded_jwt(r1))  # the JWT itself came from L2
        self.assertEqual(s.metric("agent2", L2_HIT), hits_before + 1)
        for _ in range(5):  # now in agent2's L1 as well
            self.assertEqual(s.get(tok).status, 200)
        self.assertEqual(s.idp_calls(tok), 1)
        self.assertEqual(s.metric("agent2", L2_HIT), hits_before + 1)

    def test_single_flight_one_get_per_agent(self):
        """20 requests waiting for one new token: one GET, one introspection, one SET."""
        s = self.stack
        tok = s.register("opaque-l2-flight-0010", behaviour={"delay_ms": 300})
        s.route_to("agent")
        s.redis.cmd("CONFIG", "RESETSTAT")
        results = [None] * 20
        barrier = threading.Barrier(len(results))

        def one(i):
            barrier.wait()
            results[i] = s.get(tok).status
        threads = [threading.Thread(target=one, args=(i,)) for i in range(len(results))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        self.assertEqual(results, [200] * len(results))
        self.assertEqual(s.idp_calls(tok), 1)
        harness.wait_until(lambda: command_calls(s.redis, "set") >= 1, 10, "the SET")
        self.assertEqual(command_calls(s.redis, "get"), 1)
        self.assertEqual(command_calls(s.redis, "set"), 1)

    def test_negative_answers_shared_idp_errors_not(self):
        s = self.stack
        unknown = "opaque-l2-unknown-0002"
        s.secrets.add(unknown)
        s.route_to("agent")
        self.assertEqual(s.get(unknown).status, 401)
        self.assertEqual(s.idp_calls(unknown), 1)
        s.route_to("agent2")
        self.assertEqual(s.get(unknown).status, 401)
        self.assertEqual(s.idp_calls(unknown), 1, "the negative answer was not shared")

        broken = s.register("opaque-l2-idp-error-0003", behaviour={"status": 500})
        s.route_to("agent")
        self.assertEqual(s.get(broken).status, 502)
        s.route_to("agent2")
        self.assertEqual(s.get(broken).status, 502)
        self.assertEqual(s.idp_calls(broken), 2, "an IdP error was shared")

    def test_restarted_agent_is_warm_from_l2(self):
        s = self.stack
        tok = s.register("opaque-l2-restart-0004")
        s.route_to("agent")
        r1 = s.get(tok)
        self.assertEqual(r1.status, 200)
        self.assertEqual(s.idp_calls(tok), 1)
        s.start_agent()  # a new process: empty L1
        s.wait_server_up("agent")
        r2 = s.get(tok)
        self.assertEqual(r2.status, 200, r2)
        self.assertEqual(s.idp_calls(tok), 1, "the restarted agent started cold")
        self.assertEqual(forwarded_jwt(r2), forwarded_jwt(r1))

    # -- integrity and confidentiality ---------------------------------------------------------

    def test_tampered_or_moved_value_is_a_miss(self):
        s = self.stack
        a = s.register("opaque-l2-tamper-a-0005", sub="tamper-a")
        b = s.register("opaque-l2-tamper-b-0006", sub="tamper-b")
        s.route_to("agent")
        before = set(s.redis.keys())
        ra = s.get(a)
        self.assertEqual(ra.status, 200)
        key_a = self.new_keys(before)
        self.assertEqual(len(key_a), 1)
        before = set(s.redis.keys())
        self.assertEqual(s.get(b).status, 200)
        key_b = self.new_keys(before)
        self.assertEqual(len(key_b), 1)
        key_a, key_b = key_a[0], key_b[0]

        # A's value copied under B's key: authentic for A, so it must not serve B.
        val_a = s.redis.cmd("GET", key_a)
        s.redis.cmd("SET", key_b, val_a, "KEEPTTL")
        # A's value with one bit flipped in the ciphertext.
        flipped = bytearray(val_a)
        flipped[len(flipped) // 2] ^= 0x01
        s.redis.cmd("SET", key_a, bytes(flipped), "KEEPTTL")

        invalid_before = s.metric("agent2", L2_INVALID_AUTH)
        s.route_to("agent2")  # cold L1: it must read L2
        rb = s.get(b)
        self.assertEqual(rb.status, 200, rb)
        self.assertNotEqual(forwarded_jwt(rb), forwarded_jwt(ra), "B was given A's JWT")
        self.assertIn('"sub":"tamper-b"', base64.urlsafe_b64decode(
            forwarded_jwt(rb).split(".")[1] + "==").decode())
        self.assertEqual(s.idp_calls(b), 2)  # the moved value was a miss: the IdP was asked
        ra2 = s.get(a)
        self.assertEqual(ra2.status, 200, ra2)
        self.assertEqual(s.idp_calls(a), 2)  # the flipped value was a miss too
        self.assertEqual(s.metric("agent2", L2_INVALID_AUTH), invalid_before + 2)

    def test_zz_nothing_readable_in_redis(self):
        s = self.stack
        tok = s.register("opaque-l2-clear-0007", sub="clear-text-subject",
                         behaviour={"jwt_size": 900})
        s.route_to("agent")
        r = s.get(tok)
        self.assertEqual(r.status, 200)
        s.secrets.add(forwarded_jwt(r))
        keys = s.redis.keys()
        self.assertTrue(keys)
        needles = {x.encode() for x in s.secrets if x and len(x) >= 8}
        needles |= {b"clear-text-subject", b"fleet-user-1", b"tamper-a", b"eyJ"}
        needles |= {hashlib.sha256(t.encode()).hexdigest().encode()
                    for t in s.secrets if t.startswith("opaque-")}
        needles |= {harness.token_id(t).encode() for t in s.secrets if t.startswith("opaque-")}
        for k in keys:
            self.assertRegex(k.decode(), "^" + re.escape(PREFIX) + "[0-9a-f]{64}$")
            blobs = [k, s.redis.cmd("GET", k) or b"", s.redis.cmd("DUMP", k) or b""]
            for blob in blobs:
                for n in needles:
                    self.assertNotIn(n, blob, "%r found in Redis under %r" % (n[:20], k))
        # Sizing: what Redis spends on one entry with a 900-byte JWT (printed for the README).
        usage = max(s.redis.cmd("MEMORY", "USAGE", k) for k in keys)
        sys.stderr.write("\nL2 entry with a 900-byte JWT: MEMORY USAGE %d bytes\n" % usage)

    def test_zz_logs_never_contain_tokens(self):
        logs = self.stack.all_logs("agent") + self.stack.all_logs("haproxy")
        leaked = sorted(x for x in self.stack.secrets if x and len(x) >= 8 and x in logs)
        self.assertEqual(leaked, [])

    # -- Redis failures ------------------------------------------------------------------------

    def test_redis_killed_then_back(self):
        s = self.stack
        cached = s.register("opaque-l2-down-cached-0008")
        s.route_to("agent")
        self.assertEqual(s.get(cached).status, 200)
        s.redis.kill()
        # Cached in L1: served; new: introspected; unknown: denied. All correct without Redis.
        for i in range(5):
            self.assertEqual(s.get(cached).status, 200)
            fresh = s.register("opaque-l2-down-new-%04d" % i)
            r = s.get(fresh)
            self.assertEqual(r.status, 200, r)
            self.assertEqual(s.idp_calls(fresh), 1)
            self.assertEqual(s.get("opaque-l2-down-unknown-%04d" % i).status, 401)
            s.secrets.add("opaque-l2-down-unknown-%04d" % i)
        self.assertEqual(s.idp_calls(cached), 1)
        self.assertIn("down", s.log("agent"))
        s.redis.start()  # same port, empty
        harness.wait_until(lambda: s.metric("agent", "phantom_l2_up") == 1, 20,
                           "agent reconnected to redis")
        after = s.register("opaque-l2-back-0009")
        self.assertEqual(s.get(after).status, 200)
        harness.wait_until(lambda: len(s.redis.keys()) >= 1, 10, "entry written after restart")
        self.assertIn("up again", s.log("agent"))

    def test_redis_asleep_never_holds_a_request(self):
        s = self.stack
        s.route_to("agent2")
        toks = [s.register("opaque-l2-slow-%04d" % i) for i in range(3)]
        timeouts_before = s.metric("agent2", L2_TIMEOUT)
        sleeper = Resp(s.redis.port, timeout=30)
        sleeper.send("DEBUG", "SLEEP", "4")  # Redis answers nothing for 4 s
        try:
            harness.wait_until(lambda: not s.redis.ping(), 5, "redis asleep", 0.02)
            for tok in toks:
                t0 = time.monotonic()
                r = s.get(tok)
                elapsed = time.monotonic() - t0
                self.assertEqual(r.status, 200, r)
                self.assertLess(elapsed, INTROSPECTION_TIMEOUT_S,
                                "a request waited %.2fs with Redis asleep" % elapsed)
                self.assertEqual(s.idp_calls(tok), 1)
        finally:
            self.assertEqual(sleeper.read(), "OK")
            sleeper.close()
        self.assertGreaterEqual(s.metric("agent2", L2_TIMEOUT), timeouts_before + 1)


if __name__ == "__main__":
    harness.run()
