#!/usr/bin/python3
"""Prints run-bench.sh's tables from its results.tsv: one block per gateway version (req/s, p50,
p99, IdP calls, ratio to that gateway's plain proxy, ratio to the best peer), the CPU per request
of every process, the micro-benchmarks and the targets. Rows measured in rounds ("one.1",
"one.2", ...) are shown as medians. Standard library only.

Usage: bench_report.py RESULTS WORKDIR PIN_NOTE THREADS CONNS DURATION ROUNDS JWT_SIZE"""

import json
import os
import re
import sys

results, work, pin, threads, conns, duration, rounds, jwt_size = sys.argv[1:9]


def median(xs):
    xs = sorted(xs)
    n = len(xs)
    return xs[n // 2] if n % 2 else (xs[n // 2 - 1] + xs[n // 2]) / 2


class Row:
    def __init__(self, server, key, name, parts):
        self.server, self.key, self.name, self.parts = server, key, name, parts
        num = lambda i: median([float(p[i]) for p in parts])
        self.rps, self.p50, self.p99 = num(0), num(1), num(2)
        self.calls = sum(int(p[3]) for p in parts)
        self.bad = sum(int(p[4]) for p in parts)
        self.reqs = sum(int(p[5]) for p in parts)
        infos = [json.loads(p[6]) for p in parts]
        self.cpu = {"cpu": {}, "us_per_req": {}}
        for part in ("cpu", "us_per_req"):
            for k in infos[0].get(part, {}):
                self.cpu[part][k] = median([i[part].get(k) or 0.0 for i in infos])
        self.p90 = median([i.get("p90", 0.0) for i in infos])
        if len(parts) > 1:
            self.name += " (median of %d)" % len(parts)


def load():
    order, groups = [], {}
    for line in open(results):
        if not line.strip():
            continue
        server, key, name, *rest = line.rstrip("\n").split("\t")
        base = key.split(".")[0]
        k = (server, base)
        if k not in groups:
            groups[k] = (name, [])
            order.append(k)
        groups[k][1].append(rest)
    rows = [Row(s, b, groups[(s, b)][0], groups[(s, b)][1]) for s, b in order]
    servers = []
    for r in rows:
        if r.server not in servers:
            servers.append(r.server)
    return rows, servers, groups


rows, servers, groups = load()
by = {(r.server, r.key): r for r in rows}
nginx = next((s for s in servers if s.startswith("nginx")), None)


def best_peer(server, kind):
    """The best peer row of that kind ("one": cached, "miss") for an HAProxy version: its own Lua
    peer and the nginx + Curity row, whichever served more."""
    cands = [by.get((server, "lua-" + kind))]
    if nginx:
        cands.append(by.get((nginx, "curity-" + kind)))
    cands = [c for c in cands if c]
    return max(cands, key=lambda c: c.rps) if cands else None


def fmt_table(hdr, table, left=1):
    w = [max(len(hdr[i]), *(len(r[i]) for r in table)) for i in range(len(hdr))]
    line = lambda cells: "| " + " | ".join(
        c.ljust(w[i]) if i < left else c.rjust(w[i]) for i, c in enumerate(cells)) + " |"
    out = [line(hdr), "|" + "|".join("-" * (x + 2) for x in w) + "|"]
    return "\n".join(out + [line(r) for r in table])


print()
print("phantom-token-agent benchmark: wrk -t%s -c%s -d%s, %s rounds for the cached rows, JWT %s "
      "bytes; %s" % (threads, conns, duration, rounds, jwt_size, pin))
print()
hdr = ["gateway", "row", "req/s", "p50", "p99", "IdP calls", "x plain", "x best peer"]
table = []
for s in servers:
    plain = by.get((s, "plain"))
    lat_plain = by.get((s, "lat_plain"))
    for r in (x for x in rows if x.server == s):
        if r.key == "coalesce":
            ratio = "n/a"
        elif r.key.startswith("lat_"):
            ratio = "%.2f (1-conn)" % (r.rps / lat_plain.rps) if lat_plain else "-"
        else:
            ratio = "%.2f" % (r.rps / plain.rps) if plain else "-"
        peer = "-"
        kind = {"one": "one", "many": "one", "fp-one": "one", "fp-many": "one",
                "miss": "miss"}.get(r.key)
        bp = best_peer(s, kind) if kind else None
        if bp:
            peer = "%.2f" % (r.rps / bp.rps)
        note = "" if r.bad == 0 else "  [%d of %d failed or non-2xx]" % (r.bad, r.reqs)
        table.append([s, r.name + note, "%.0f" % r.rps, "%.3f ms" % r.p50, "%.3f ms" % r.p99,
                      str(r.calls), ratio, peer])
print(fmt_table(hdr, table, left=2))
print()
print("x plain: against the plain proxy without rules of the same gateway (nginx rows: nginx plain).")
print("x best peer: the agent row against the best of the Lua peer on the same HAProxy and nginx + "
      "Curity, same path (cached or miss). The Lua peer runs with the access log and tune.bufsize of "
      "every other HAProxy row; its file as shipped logs nothing (row \"as shipped\", not a best peer).")

print()
print("CPU during each wrk run: busy % of each CPU, and CPU microseconds per request of each process")
print("(user + system, from /proc; 10 ms tick resolution).")
print()
procs = sorted({p for r in rows for p in r.cpu["us_per_req"]})
ct = []
for r in rows:
    if r.key == "coalesce":
        continue
    cpus = " ".join("%s %5.1f%%" % (c, v) for c, v in sorted(r.cpu["cpu"].items()))
    ct.append([r.server, r.name, cpus] + ["%.2f" % r.cpu["us_per_req"][p]
                                          if r.cpu["us_per_req"].get(p) else "-" for p in procs])
print(fmt_table(["gateway", "row", "CPU busy"] + [p + " us/req" for p in procs], ct, left=3))


def read(name):
    p = os.path.join(work, name)
    return open(p).read() if os.path.exists(p) else ""


dec, cg, cache = read("bench_decision.txt"), read("callgrind.txt"), read("bench_cache.txt")
for title, text in (("bench_decision (native)", dec), ("callgrind", cg), ("bench_cache", cache)):
    if text.strip():
        print()
        print("--- %s ---" % title)
        print(text.rstrip())

print()
print("--- targets ---")
verdict = lambda ok: "MET" if ok else "NOT MET"
for s in servers:
    if s == nginx:
        continue
    plain, one = by.get((s, "plain")), by.get((s, "one"))
    if not plain or not one:
        continue
    print("[%s]" % s)
    r = one.rps / plain.rps
    print("%-8s cached path >= 0.85x plain req/s: %.2fx" % (verdict(r >= 0.85), r))
    lua, lua_asis = by.get((s, "lua-one")), by.get((s, "lua-asis-one"))
    if lua:
        r = one.rps / lua.rps
        print("%-8s cached path >= 1.1x the Lua peer: %.2fx" % (verdict(r >= 1.1), r))
    many = by.get((s, "many"))
    if many:
        r = many.rps / plain.rps
        print("%-8s %s cached tokens >= 0.8x plain: %.2fx" % (verdict(r >= 0.8), "10 000", r))
    fp, fpm = by.get((s, "fp-one")), by.get((s, "fp-many"))
    if fp:
        r = fp.rps / plain.rps
        print("%-8s fast path: cached path >= 0.85x plain req/s: %.2fx" % (verdict(r >= 0.85), r))
        if lua:
            r = fp.rps / lua.rps
            print("%-8s fast path: cached path >= 1.1x the Lua peer: %.2fx" % (verdict(r >= 1.1), r))
        if lua_asis:
            r = fp.rps / lua_asis.rps
            print("%-8s fast path: cached path >= 1.1x the Lua peer as shipped, without access log: "
                  "%.2fx" % (verdict(r >= 1.1), r))
    if fpm:
        r = fpm.rps / plain.rps
        print("%-8s fast path: %s cached tokens >= 0.8x plain: %.2fx" % (verdict(r >= 0.8), "10 000", r))
    miss, bp = by.get((s, "miss")), best_peer(s, "miss")
    if miss and bp:
        r = miss.rps / bp.rps
        print("%-8s miss path >= 1.2x the best peer (%s): %.2fx" % (verdict(r >= 1.2), bp.name, r))
    up = plain.cpu["us_per_req"].get("haproxy-plain")
    ua = one.cpu["us_per_req"]
    if up and ua.get("haproxy-agent") and ua.get("agent"):
        print("(info)   CPU per request: plain HAProxy %.1f us; HAProxy with SPOE and the shipped rules "
              "%.1f us + agent %.1f us: %.2fx plain from CPU, %.2fx with a zero-cost agent"
              % (up, ua["haproxy-agent"], ua["agent"], up / (ua["haproxy-agent"] + ua["agent"]),
                 up / ua["haproxy-agent"]))
    lp, lo = by.get((s, "lat_plain")), by.get((s, "lat_one"))
    if lp and lo:
        # Each round runs plain then agent back to back: the median of the per-round differences
        # cancels the slow drifts of the shared machine better than a difference of medians.
        pairs = list(zip(groups[(s, "lat_plain")][1], groups[(s, "lat_one")][1]))
        d = lambda i: median([float(b[i]) - float(a[i]) for a, b in pairs])
        added, added50 = d(2), d(1)
        noisy = lp.p99 > 10 * lp.p50
        print("%-8s p99 added latency <= 0.3 ms (1 connection, unloaded; median of %d paired rounds): "
              "%+.3f ms (p50 %+.3f ms)" % (verdict(added <= 0.3) + ("*" if noisy else ""),
                                          len(pairs), added, added50))
        if noisy:
            print("         * plain HAProxy's own p99 is %.3f ms against a p50 of %.3f ms: the tail "
                  "is the machine's scheduling noise" % (lp.p99, lp.p50))
    co = by.get((s, "coalesce"))
    if co:
        print("%-8s coalescing: exactly 1 IdP call for %d concurrent requests: %d call(s), %d failed"
              % (verdict(co.calls == 1 and co.bad == 0), co.reqs, co.calls, co.bad))
m = re.search(r"ns/decision:\s*([\d.]+)", dec)
if m:
    ns = float(m.group(1))
    print("%-8s decision path on a hit <= 2 us: %.0f ns" % (verdict(ns <= 2000), ns))
m = re.search(r"instructions/decision:\s*([\d.]+)", cg)
if m:
    print("%-8s callgrind: %s instructions per decision" % ("(info)", m.group(1)))
m = re.search(r"bytes/entry:\s*([\d.]+)", dec)
if m:
    b = float(m.group(1))
    lim = 2 * int(jwt_size) + 256
    print("%-8s memory per cached entry <= 2xJWT+256 B (%d B for a %s B JWT): %.0f B"
          % (verdict(b <= lim), lim, jwt_size, b))
