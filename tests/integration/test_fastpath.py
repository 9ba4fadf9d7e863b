#!/usr/bin/python3
"""The fast path through a real HAProxy: the agent publishes its positive decisions into HAProxy's
map over the stats socket, and HAProxy serves the next requests of that token on that route
without asking the agent (counted: the agent's decisions and the IdP's calls do not move).

Also: a route that requires a scope the token lacks is never served from the map; two
Authorization headers never take the fast path; an entry whose expiry has passed is ignored by
HAProxy itself, and the agent deletes it; the token's exp bounds an entry's life; eviction at
fastpath-max-entries; a restarted HAProxy (new process, empty map) is re-filled.

The cfg is the shipped haproxy.cfg with its fast-path rules enabled (PHANTOM_FASTPATH_MAP/_KEY).
Runs with PTA_HAPROXY (2.6 and 3.x alike); on 3.4+ the map values are the header encoded for
set-headers-bin, decoded and checked here (jwt_of).
"""

import hashlib
import json
import os
import re
import sys
import time
import unittest
import urllib.parse

sys.path.insert(0, os.path.dirname(__file__))
import harness  # noqa: E402
from harness import Stack, free_port, http_request, wait_until  # noqa: E402

KEY_B64 = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="

def fastpath_cfg(src):
    """The shipped cfg with the fast-path rules (and a backend name 3.3+ accepts)."""
    with open(src) as f:
        cfg = f.read()
    cfg = re.sub(r"(?m)^    default_backend api$", "    default_backend api-servers", cfg)
    cfg = re.sub(r"(?m)^backend api$", "backend api-servers", cfg)
    assert "pta_fp_key" in cfg, "the shipped cfg has no fast-path rules"
    return cfg


def varint(data, i):
    """HAProxy's varint (decode_varint): (value, next index)."""
    v = data[i]
    i += 1
    if v < 240:
        return v, i
    shift = 4
    while True:
        b = data[i]
        i += 1
        v += b << shift
        shift += 7
        if b < 128:
            return v, i


def jwt_of(value):
    """The JWT a map value carries after "<exp>:": itself (2.6 to 3.3), or on 3.4+ a 41-character
    percent-encoded head (a filler record, then the Authorization record's name and lengths and
    "Bearer ") followed by the JWT; the head is decoded and checked strictly here."""
    text = value.split(":", 1)[1]
    if not text.startswith("%"):
        return text
    head, jwt = urllib.parse.unquote_to_bytes(text[:41]), text[41:]
    n, i = varint(head, 0)
    filler, i = head[i:i + n], i + n
    empty, i = varint(head, i)
    assert set(filler) == {ord("x")} and empty == 0, (filler, empty)
    n, i = varint(head, i)
    name, i = head[i:i + n], i + n
    n, i = varint(head, i)
    assert name == b"Authorization" and head[i:] == b"Bearer ", (name, head[i:])
    assert n == len("Bearer ") + len(jwt), (n, len(jwt))
    return jwt


def map_key(authorization, scopes="", audience=""):
    msg = (authorization + "|" + scopes + "|" + audience + "|" + KEY_B64).encode()
    return hashlib.sha256(msg).digest()[:16].hex().upper()


class FastpathStack(Stack):
    def __init__(self, ttl="20s", max_entries=100):
        self.metrics_port = free_port()
        super().__init__()
        self.map_file = os.path.join(self.tmpdir, "fastpath.map")
        open(self.map_file, "w").close()
        self.key_file = self._secret_file("fastpath-key.map",
                                          "# shared with haproxy.cfg\nfastpath-key %s\n" % KEY_B64)
        self.cfg_file = os.path.join(self.tmpdir, "haproxy-fastpath.cfg")
        with open(self.cfg_file, "w") as f:
            f.write(fastpath_cfg(harness.HAPROXY_CFG))
        self.haproxy_env.update({"PHANTOM_FASTPATH_MAP": self.map_file,
                                 "PHANTOM_FASTPATH_KEY": self.key_file,
                                 "PHANTOM_REALM": "fp-realm"})  # not the agent's default
        self.admin_token = "fp-admin-" + os.urandom(8).hex()
        self.admin_file = self._secret_file("admin-token", self.admin_token)
        self.agent_args += ["--fastpath-socket", "unix:" + self.stats_socket,
                            "--fastpath-map", self.map_file, "--fastpath-key-file", self.key_file,
                            "--fastpath-ttl", ttl, "--fastpath-max-entries", str(max_entries),
                            "--cache-honour-no-store",
                            "--http-listen", "127.0.0.1:%d" % self.metrics_port,
                            "--admin-token-file", self.admin_file]

    def purge(self, selector):
        r = http_request(self.metrics_port, "POST", "/admin/purge",
                         headers=[("Authorization", "Bearer " + self.admin_token),
                                  ("Content-Type", "application/json")],
                         body=json.dumps(selector).encode())
        assert r.status == 200, r
        return json.loads(r.body)["purged"]

    def start_haproxy(self):
        p = harness.Proc("haproxy", [harness.HAPROXY, "-db", "-f", self.cfg_file], self.tmpdir,
                         env=self.haproxy_environ())
        self.procs["haproxy"] = p
        wait_until(lambda: p.check_alive() and self._stats_answers(), 15, "haproxy ready")

    def restart_haproxy(self):
        old = self.procs.pop("haproxy")
        old.stop()
        self.start_haproxy()

    def map_entries(self):
        out = self.haproxy_cmd("show map %s" % self.map_file)
        entries = {}
        for line in out.splitlines():
            parts = line.split(" ", 2)
            if len(parts) == 3 and parts[0].startswith("0x"):
                entries[parts[1]] = parts[2]
        return entries

    def decisions(self):
        r = http_request(self.metrics_port, "GET", "/metrics")
        total = 0
        for line in r.body.decode().splitlines():
            if line.startswith("phantom_decisions_total{"):
                total += int(float(line.rsplit(" ", 1)[1]))
        return total

    def backend_auth(self, r):
        return [v for k, v in r.json()["headers"] if k.lower() == "authorization"]


class FastpathTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.s = FastpathStack(max_entries=3).start()
        sys.stderr.write("fastpath test with %s\n" % harness.HAPROXY)

    @classmethod
    def tearDownClass(cls):
        cls.s.stop()

    def published(self, auth, scopes=""):
        key = map_key(auth, scopes)
        return wait_until(lambda: self.s.map_entries().get(key), 10, "entry %s published" % key)

    def test_metrics_count_the_map(self):
        s = self.s
        tok = s.register("fp-metrics-token-1")
        self.assertEqual(s.get(tok).status, 200)
        self.published("Bearer " + tok)
        text = http_request(s.metrics_port, "GET", "/metrics").body.decode()
        values = dict(line.rsplit(" ", 1) for line in text.splitlines()
                      if line.startswith("phantom_fastpath_"))
        self.assertGreaterEqual(int(values['phantom_fastpath_decisions_total{result="published"}']), 1)
        self.assertGreaterEqual(int(values["phantom_fastpath_entries"]), 1)
        self.assertIn('phantom_fastpath_decisions_total{result="refused"}', values)

    def test_admin_purge_reaches_the_map(self):
        """A purge through the admin API removes the token's map entry at once (not after
        fastpath-ttl); any other selector clears the map, since it knows entries by token only."""
        s = self.s
        tok = s.register("fp-purge-token-1", sub="fp-purge-alice")
        other = s.register("fp-purge-token-2", sub="fp-purge-bob")
        for t in (tok, other):
            self.assertEqual(s.get(t).status, 200)
            self.published("Bearer " + t)
        self.assertGreaterEqual(s.purge({"token": tok}), 1)
        key, other_key = map_key("Bearer " + tok), map_key("Bearer " + other)
        wait_until(lambda: key not in s.map_entries(), 10, "purged entry removed")
        self.assertIn(other_key, s.map_entries())
        before = s.decisions()
        self.assertEqual(s.get(tok).status, 200)  # asked the agent again, not the map
        self.assertEqual(s.decisions(), before + 1)
        self.published("Bearer " + tok)
        s.purge({"sub": "fp-purge-bob"})
        wait_until(lambda: not ({key, other_key} & set(s.map_entries())), 10, "map cleared")

    def test_hit_is_served_without_the_agent(self):
        s = self.s
        tok = s.register("fp-hit-token-1", scope="openid read")
        first = s.get(tok)
        self.assertEqual(first.status, 200)
        jwt = s.backend_auth(first)
        value = self.published("Bearer " + tok)
        self.assertEqual(["Bearer " + jwt_of(value)], jwt)
        # 3.4+ gets the header encoded for set-headers-bin (no byte-by-byte HTTP encoding)
        encoded = "%0DAuthorization" in value[11:52]
        self.assertEqual(encoded, harness.haproxy_version_tuple() >= (3, 4), value[:40])
        self.assertLessEqual(int(value[:10]), time.time() + 21)
        decisions, calls = s.decisions(), s.idp_calls(tok)
        for method in ("GET", "HEAD", "POST"):
            r = s.get(tok, method=method)
            self.assertEqual(r.status, 200, method)
            if method != "HEAD":
                self.assertEqual(s.backend_auth(r), jwt)  # the JWT, never the opaque token
        self.assertEqual(s.decisions(), decisions, "a hit reached the agent")
        self.assertEqual(s.idp_calls(tok), calls)

    def test_scope_is_enforced_per_route(self):
        s = self.s
        tok = s.register("fp-scope-token-1", scope="openid read")
        self.assertEqual(s.get(tok).status, 200)
        self.published("Bearer " + tok)
        # The admin route needs "admin": the entry for the unscoped route does not apply there.
        before = s.decisions()
        for _ in range(3):
            self.assertEqual(s.get(tok, path="/api/admin").status, 403)
        self.assertEqual(s.decisions(), before + 3, "the scoped route was served from the map")
        self.assertNotIn(map_key("Bearer " + tok, "admin"), s.map_entries())
        # A token with the scope gets its own entry for the scoped route.
        adm = s.register("fp-scope-token-2", scope="openid admin")
        self.assertEqual(s.get(adm, path="/api/admin").status, 200)
        self.published("Bearer " + adm, "admin")
        before = s.decisions()
        self.assertEqual(s.get(adm, path="/api/admin/users").status, 200)
        self.assertEqual(s.decisions(), before)

    def test_two_authorization_headers_never_take_the_fast_path(self):
        s = self.s
        tok = s.register("fp-two-headers-1")
        self.assertEqual(s.get(tok).status, 200)
        self.published("Bearer " + tok)
        before = s.decisions()
        r = s.request(headers=[("Authorization", "Bearer " + tok),
                               ("Authorization", "Bearer " + tok)])
        self.assertEqual(r.status, 400)
        self.assertEqual(s.decisions(), before + 1)

    def test_rules_after_the_fast_path_still_apply_to_misses(self):
        """The realm and the 8 KB limit come after the fast-path block (a hit needs neither):
        an oversized header is still refused by HAProxy itself, with the realm, and a miss still
        carries the realm to the agent."""
        s = self.s
        before = s.decisions()
        r = s.request(headers=[("Authorization", "Bearer " + "a" * 9000)])
        self.assertEqual(r.status, 400, r)
        self.assertEqual(r.header("WWW-Authenticate"), 'Bearer realm="fp-realm", '
                         'error="invalid_request", error_description="Malformed Authorization header"')
        self.assertEqual(s.decisions(), before, "the agent was asked about an 8 KB header")
        r = s.get("fp-never-registered-token-1")
        self.assertEqual(r.status, 401, r)
        self.assertIn('realm="fp-realm"', r.header("WWW-Authenticate"))
        self.assertEqual(s.decisions(), before + 1)

    def test_entries_never_outlive_the_agents_cache(self):
        """HAProxy must not serve a decision longer than the agent would: an answer the cache
        does not keep (no-store) is never published, and a short max-age bounds the entry."""
        s = self.s
        nostore = s.register("fp-no-store-token-1", behaviour={"cache_control": "no-store"})
        short = s.register("fp-max-age-token-1", behaviour={"cache_control": "max-age=3"})
        self.assertEqual(s.get(nostore).status, 200)
        self.assertEqual(s.get(short).status, 200)
        # One CLI session carries the agent's commands in order: once the later one is in the
        # map, an "add" for the first would be too.
        value = self.published("Bearer " + short)
        self.assertLessEqual(int(value[:10]), time.time() + 3)
        self.assertNotIn(map_key("Bearer " + nostore), s.map_entries())
        before = s.decisions()
        self.assertEqual(s.get(nostore).status, 200)
        self.assertEqual(s.decisions(), before + 1, "a no-store answer was served from the map")

    def test_stale_entry_is_ignored_by_haproxy(self):
        s = self.s
        tok = s.register("fp-stale-token-1")
        self.assertEqual(s.get(tok).status, 200)
        key = map_key("Bearer " + tok)
        value = self.published("Bearer " + tok)
        # Make the entry stale behind the agent's back: HAProxy must not use it.
        past = "%010d" % (int(time.time()) - 1)
        s.haproxy_cmd("set map %s %s %s" % (s.map_file, key, past + value[10:]))
        before = s.decisions()
        self.assertEqual(s.get(tok).status, 200)
        self.assertEqual(s.decisions(), before + 1, "a stale entry was used")

    def test_token_exp_bounds_the_entry_and_the_agent_deletes_it(self):
        s = self.s
        # exp in 8 s, skew 5 s: the entry may live 3 s at most, whatever the fast-path TTL.
        tok = s.register("fp-short-token-1", exp_in=8)
        self.assertEqual(s.get(tok).status, 200)
        value = self.published("Bearer " + tok)
        self.assertLessEqual(int(value[:10]), time.time() + 4)
        key = map_key("Bearer " + tok)
        wait_until(lambda: key not in s.map_entries(), 15, "the expired entry deleted")

    def test_zz_restarted_haproxy_is_refilled(self):
        s = self.s
        tok = s.register("fp-reload-token-1")
        self.assertEqual(s.get(tok).status, 200)
        key = map_key("Bearer " + tok)
        self.published("Bearer " + tok)
        s.restart_haproxy()  # a new process, its map empty
        wait_until(lambda: key in s.map_entries(), 15, "the new process re-filled")
        before = s.decisions()
        self.assertEqual(s.get(tok).status, 200)
        self.assertEqual(s.decisions(), before)


class FastpathEvictionTest(unittest.TestCase):
    def test_eviction_at_max_entries(self):
        s = FastpathStack(max_entries=2).start()
        try:
            toks = [s.register("fp-evict-token-%d" % i) for i in range(3)]
            for t in toks:
                self.assertEqual(s.get(t).status, 200)
            keys = [map_key("Bearer " + t) for t in toks]
            wait_until(lambda: set(s.map_entries()) == set(keys[1:]), 10,
                       "the first entry evicted, the two later ones published")
            before = s.decisions()
            self.assertEqual(s.get(toks[0]).status, 200)
            self.assertEqual(s.decisions(), before + 1)
        finally:
            s.stop()


class NoFastpathTest(unittest.TestCase):
    def test_cfg_without_map_loads_and_works(self):
        """The fast-path rules are optional: without PHANTOM_FASTPATH_MAP the cfg is today's."""
        s = Stack()
        cfg = os.path.join(s.tmpdir, "haproxy-fastpath.cfg")
        with open(cfg, "w") as f:
            f.write(fastpath_cfg(harness.HAPROXY_CFG))
        orig = harness.HAPROXY_CFG
        harness.HAPROXY_CFG = cfg
        try:
            s.start()
            tok = s.register("fp-none-token-1")
            self.assertEqual(s.get(tok).status, 200)
            self.assertEqual(s.get(tok).status, 200)
            self.assertEqual(s.idp_calls(tok), 1)
        finally:
            harness.HAPROXY_CFG = orig
            s.stop()


if __name__ == "__main__":
    unittest.main(verbosity=2)
