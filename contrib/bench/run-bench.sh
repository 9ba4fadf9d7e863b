#!/usr/bin/env bash
# The benchmark: HAProxy as a plain proxy (the ceiling) against HAProxy + phantom-token-agent with
# the SHIPPED haproxy-conf/haproxy.cfg and spoe/phantom-token.conf, on loopback, driven by wrk.
# Prints one table (req/s, p50, p99, IdP calls, ratio to the ceiling), then the agent-only
# micro-benchmarks (bench_decision, callgrind, bench_cache) and which targets are met.
#
# Usage: contrib/bench/run-bench.sh            (from anywhere; needs root or sudo only to install
#                                              wrk/valgrind when they are missing)
# Environment (all optional):
#   PTA_AGENT=/path/to/phantom-token-agent   use this binary instead of building one
#   BENCH_BUILD_DIR=DIR        where to build (default: <repo>/build-bench)
#   BENCH_THREADS=1 BENCH_CONNECTIONS=50 BENCH_DURATION=10s BENCH_WARMUP=3s
#                              wrk settings, the same for every throughput row
#   BENCH_LAT_DURATION=5s BENCH_LAT_ROUNDS=3   the two latency rows (1 connection, unloaded),
#                              alternated LAT_ROUNDS times; the table shows the medians
#   BENCH_NTOKENS=10000        distinct tokens of the "many tokens" row
#   BENCH_COALESCE_N=1000 BENCH_COALESCE_DELAY_MS=200   the coalescing row
#   BENCH_JWT_SIZE=900         bytes of the JWT the IdP stub returns
#   BENCH_PIN=1                pin the system under test (HAProxy proxy + agent) to BENCH_SUT_CPUS
#   BENCH_SUT_CPUS=0 BENCH_AUX_CPUS=1   and wrk, the backend and the IdP stub to BENCH_AUX_CPUS
#   BENCH_MICRO=1              also run bench_decision, callgrind and bench_cache (0: skip)
#   BENCH_KEEP_LOGS=0          1: keep the work directory (logs of every process)
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
HERE=$REPO/contrib/bench
THREADS=${BENCH_THREADS:-1}
CONNS=${BENCH_CONNECTIONS:-50}
DURATION=${BENCH_DURATION:-10s}
WARMUP=${BENCH_WARMUP:-3s}
LAT_DURATION=${BENCH_LAT_DURATION:-5s}
LAT_ROUNDS=${BENCH_LAT_ROUNDS:-3}
NTOKENS=${BENCH_NTOKENS:-10000}
COALESCE_N=${BENCH_COALESCE_N:-1000}
COALESCE_DELAY_MS=${BENCH_COALESCE_DELAY_MS:-200}
JWT_SIZE=${BENCH_JWT_SIZE:-900}
PIN=${BENCH_PIN:-1}
SUT_CPUS=${BENCH_SUT_CPUS:-0}
AUX_CPUS=${BENCH_AUX_CPUS:-1}
MICRO=${BENCH_MICRO:-1}
HAPROXY=${PTA_HAPROXY:-$(command -v haproxy || echo /usr/sbin/haproxy)}
PY=python3

log() { printf '%s\n' "bench: $*" >&2; }
die() { log "$*"; exit 1; }

# ---- tools ---------------------------------------------------------------------------------------
if ! command -v wrk >/dev/null || ! command -v valgrind >/dev/null || ! command -v curl >/dev/null ||
   ! [ -x "$HAPROXY" ]; then
  log "installing the benchmark's dependencies"
  "$REPO/contrib/install-deps.sh" bench
  HAPROXY=$(command -v haproxy || echo /usr/sbin/haproxy)
fi

BUILD=${BENCH_BUILD_DIR:-$REPO/build-bench}
if [ -z "${PTA_AGENT:-}" ] || [ "$MICRO" = 1 ]; then
  log "building in $BUILD"
  cmake -S "$REPO" -B "$BUILD" >"${TMPDIR:-/tmp}/pta-bench-cmake.log" 2>&1 ||
    { cat "${TMPDIR:-/tmp}/pta-bench-cmake.log" >&2; die "cmake failed"; }
  targets=(phantom-token-agent)
  [ "$MICRO" = 1 ] && targets+=(bench_decision)
  [ "$MICRO" = 1 ] && [ -f "$REPO/tests/bench/bench_cache.c" ] && targets+=(bench_cache)
  for t in "${targets[@]}"; do
    cmake --build "$BUILD" -j2 --target "$t" >"${TMPDIR:-/tmp}/pta-bench-build.log" 2>&1 ||
      { tail -30 "${TMPDIR:-/tmp}/pta-bench-build.log" >&2; die "cannot build $t"; }
  done
fi
AGENT=${PTA_AGENT:-$BUILD/phantom-token-agent}
[ -x "$AGENT" ] || die "no agent binary at $AGENT"

# ---- pinning -------------------------------------------------------------------------------------
ncpu=$(nproc)
sut=() aux=()
if [ "$PIN" = 1 ] && [ "$ncpu" -ge 2 ] && command -v taskset >/dev/null; then
  sut=(taskset -c "$SUT_CPUS")
  aux=(taskset -c "$AUX_CPUS")
  PIN_NOTE="pinned with taskset: HAProxy proxy + agent on CPU $SUT_CPUS; wrk, backend, IdP stub on CPU $AUX_CPUS"
else
  PIN_NOTE="not pinned ($ncpu CPUs; BENCH_PIN=$PIN)"
fi

# ---- processes -----------------------------------------------------------------------------------
WORK=$(mktemp -d "${TMPDIR:-/tmp}/pta-bench.XXXXXX")
PIDS=()
cleanup() {
  local p
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  if [ "${BENCH_KEEP_LOGS:-0}" = 1 ]; then log "logs kept in $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
  $PY -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

wait_port() { # port, name, pid
  local i
  for i in $(seq 1 100); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
    kill -0 "$3" 2>/dev/null || die "$2 exited; see $WORK/$2.log"
    sleep 0.1
  done
  die "$2 does not listen on port $1"
}

# A "READY <port>" server (the IdP stub): sets READY_PORT and READY_PID (not in a subshell, so
# that cleanup() knows the process).
start_ready() { # name, cmd...
  local name=$1; shift
  "$@" >"$WORK/$name.out" 2>"$WORK/$name.log" &
  PIDS+=($!)
  local pid=$! i
  READY_PID=$pid
  for i in $(seq 1 100); do
    if grep -q '^READY ' "$WORK/$name.out" 2>/dev/null; then
      READY_PORT=$(awk '/^READY /{print $2; exit}' "$WORK/$name.out")
      return 0
    fi
    kill -0 "$pid" 2>/dev/null || die "$name exited: $(cat "$WORK/$name.log")"
    sleep 0.1
  done
  die "$name never became ready"
}

BACKEND_PORT=$(free_port)
BENCH_BACKEND_BIND=127.0.0.1:$BACKEND_PORT "${aux[@]}" "$HAPROXY" -db -f "$HERE/haproxy-backend.cfg" \
  >"$WORK/backend.log" 2>&1 &
PIDS+=($!); BACKEND_PID=$!; wait_port "$BACKEND_PORT" backend $!

start_ready stub "${aux[@]}" $PY "$HERE/idp_stub.py" --port 0 --jwt-size "$JWT_SIZE"
STUB_PORT=$READY_PORT STUB_PID=$READY_PID
STUB=http://127.0.0.1:$STUB_PORT

AGENT_PORT=$(free_port)
"${sut[@]}" "$AGENT" --listen "127.0.0.1:$AGENT_PORT" --log-level warn --client-auth none \
  --introspection-url "$STUB/introspect" >"$WORK/agent.log" 2>&1 &
PIDS+=($!); AGENT_PID=$!; wait_port "$AGENT_PORT" agent $!

PLAIN_PORT=$(free_port)
PHANTOM_BIND=127.0.0.1:$PLAIN_PORT PHANTOM_BACKEND=127.0.0.1:$BACKEND_PORT \
  "${sut[@]}" "$HAPROXY" -db -f "$HERE/haproxy-plain.cfg" >/dev/null 2>"$WORK/haproxy-plain.log" &
PIDS+=($!); PLAIN_PID=$!; wait_port "$PLAIN_PORT" haproxy-plain $!

PROXY_PORT=$(free_port)
PHANTOM_BIND=127.0.0.1:$PROXY_PORT PHANTOM_BACKEND=127.0.0.1:$BACKEND_PORT \
  PHANTOM_AGENT=127.0.0.1:$AGENT_PORT PHANTOM_SPOE_CONF=$REPO/spoe/phantom-token.conf \
  "${sut[@]}" "$HAPROXY" -db -f "$REPO/haproxy-conf/haproxy.cfg" >/dev/null \
  2>"$WORK/haproxy-agent.log" &
PIDS+=($!); PROXY_PID=$!; wait_port "$PROXY_PORT" haproxy-agent $!

PLAIN_URL=http://127.0.0.1:$PLAIN_PORT/api/bench
PROXY_URL=http://127.0.0.1:$PROXY_PORT/api/bench

stub_post() { curl -sf -o /dev/null -X POST -H 'Content-Type: application/json' --data-binary "$2" "$STUB$1"; }
stub_calls() { curl -sf "$STUB/_control/stats" | $PY -c 'import json,sys; print(json.load(sys.stdin)["calls"])'; }

cpu_snap() {
  $PY "$HERE/cpustat.py" haproxy-plain="$PLAIN_PID" haproxy-agent="$PROXY_PID" agent="$AGENT_PID" \
    backend="$BACKEND_PID" idp-stub="$STUB_PID"
}

RUN_ID=$(date +%s)-$$
TOKEN=bench-one-$RUN_ID
stub_post /_control/tokens "{\"token\": \"$TOKEN\"}"

# The agent's HAProxy answers once the agent is up and the token resolves.
for i in $(seq 1 100); do
  code=$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $TOKEN" "$PROXY_URL" || true)
  [ "$code" = 200 ] && break
  [ "$i" = 100 ] && die "HAProxy + agent never answered 200 (last: $code); see $WORK"
  sleep 0.1
done
code=$(curl -s -o /dev/null -w '%{http_code}' "$PLAIN_URL")
[ "$code" = 200 ] || die "plain HAProxy answers $code"

# ---- rows ----------------------------------------------------------------------------------------
RESULTS=$WORK/results.tsv
: >"$RESULTS"

# wrk_row name key url script conns duration [warmup]; appends: key name rps p50 p99 calls non2xx reqs
wrk_row() {
  local name=$1 key=$2 url=$3 script=$4 conns=$5 dur=$6 warm=${7:-$WARMUP} sargs=()
  [ -n "$script" ] && sargs=(-s "$HERE/$script")
  if [ "$warm" != 0 ]; then
    "${aux[@]}" wrk -t"$THREADS" -c"$conns" -d"$warm" "${sargs[@]}" "$url" >/dev/null
  fi
  local before after
  before=$(stub_calls)
  cpu_snap >"$WORK/$key.cpu0"
  "${aux[@]}" wrk -t"$THREADS" -c"$conns" -d"$dur" --latency "${sargs[@]}" "$url" >"$WORK/$key.wrk"
  cpu_snap >"$WORK/$key.cpu1"
  after=$(stub_calls)
  $PY - "$WORK/$key.wrk" "$key" "$name" $((after - before)) "$WORK/$key.cpu0" "$WORK/$key.cpu1" \
    >>"$RESULTS" <<'EOF'
import json, re, sys
path, key, name, calls, c0, c1 = sys.argv[1:7]
text = open(path).read()
def ms(v, unit):
    return float(v) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[unit]
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))
lat = dict((p, ms(v, u)) for p, v, u in re.findall(r"^\s+(50|90|99)%\s+([\d.]+)(us|ms|s|m)\s*$", text, re.M))
reqs = int(re.search(r"(\d+) requests in", text).group(1))
m = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
bad = int(m.group(1)) if m else 0
m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
if m:
    bad += sum(int(x) for x in m.groups())
a, b = json.load(open(c0)), json.load(open(c1))
cpu = {}
for n in b["cpus"]:
    busy, total = (b["cpus"][n][i] - a["cpus"][n][i] for i in (0, 1))
    cpu[n] = round(100.0 * busy / total, 1) if total else 0.0
per_req = {}
for n, t in b["procs"].items():
    if t is not None and a["procs"].get(n) is not None:
        per_req[n] = round((t - a["procs"][n]) / b["hz"] * 1e6 / max(reqs, 1), 2)
print("\t".join([key, name, "%.1f" % rps, "%.3f" % lat["50"], "%.3f" % lat["99"], calls, str(bad),
                 str(reqs), json.dumps({"cpu": cpu, "us_per_req": per_req, "p90": lat["90"]})]))
EOF
  log "$(tail -1 "$RESULTS" | cut -f2-8)"
}

log "$PIN_NOTE"
log "wrk -t$THREADS -c$CONNS -d$DURATION (warm-up $WARMUP) against each"

# 1. The ceiling.
wrk_row "HAProxy plain proxy (the ceiling)" plain "$PLAIN_URL" "" "$CONNS" "$DURATION"

# 2. One token, cached.
export BENCH_TOKEN=$TOKEN
wrk_row "HAProxy + agent, one token, cached" one "$PROXY_URL" token-one.lua "$CONNS" "$DURATION"

# 3. 10 000 distinct tokens, all cached after the warm-up.
export BENCH_NTOKENS=$NTOKENS BENCH_PREFIX=bench-many-$RUN_ID-
$PY -c 'import json,sys; n,p=int(sys.argv[1]),sys.argv[2]; print(json.dumps({"tokens":[p+str(i) for i in range(n)]}))' \
  "$NTOKENS" "$BENCH_PREFIX" >"$WORK/tokens.json"
stub_post /_control/tokens "@$WORK/tokens.json"
before=$(stub_calls)
for i in 1 2 3 4 5 6; do # until every token has been introspected once
  "${aux[@]}" wrk -t"$THREADS" -c"$CONNS" -d"$WARMUP" -s "$HERE/token-many.lua" "$PROXY_URL" >/dev/null
  [ $(($(stub_calls) - before)) -ge "$NTOKENS" ] && break
done
warm_calls=$(($(stub_calls) - before))
[ "$warm_calls" -ge "$NTOKENS" ] || log "warning: only $warm_calls of $NTOKENS tokens introspected in the warm-up"
wrk_row "HAProxy + agent, $NTOKENS distinct tokens, cached" many "$PROXY_URL" token-many.lua "$CONNS" "$DURATION" 0

# 4. Every request a new token: the miss path.
stub_post /_control/mode '{"all_active": true}'
export BENCH_PREFIX=bench-warm-$RUN_ID-
"${aux[@]}" wrk -t"$THREADS" -c"$CONNS" -d"$WARMUP" -s "$HERE/token-new.lua" "$PROXY_URL" >/dev/null
export BENCH_PREFIX=bench-new-$RUN_ID-
wrk_row "HAProxy + agent, every request a new token (miss)" miss "$PROXY_URL" token-new.lua "$CONNS" "$DURATION" 0

# 5. Coalescing: COALESCE_N concurrent requests, one new token, the IdP answers after a delay.
stub_post /_control/mode "{\"all_active\": true, \"delay_ms\": $COALESCE_DELAY_MS}"
sleep 1 # let the miss row's last introspections drain
before=$(stub_calls)
ulimit -n 65536 2>/dev/null || true
"${aux[@]}" $PY "$HERE/coalesce.py" --port "$PROXY_PORT" --token "bench-coalesce-$RUN_ID" \
  -n "$COALESCE_N" >"$WORK/coalesce.json"
after=$(stub_calls)
$PY - "$WORK/coalesce.json" $((after - before)) "$COALESCE_N" "$COALESCE_DELAY_MS" >>"$RESULTS" <<'EOF'
import json, sys
d = json.load(open(sys.argv[1]))
name = "HAProxy + agent, %s concurrent, one new token (IdP +%s ms)" % (sys.argv[3], sys.argv[4])
print("\t".join(["coalesce", name, "%.1f" % d["req_per_s"], "%.3f" % d["p50_ms"],
                 "%.3f" % d["p99_ms"], sys.argv[2], str(d["requests"] - d["ok"]), str(d["requests"]), "{}"]))
EOF
log "$(tail -1 "$RESULTS" | cut -f2-8)"
stub_post /_control/mode '{}'

# 6. Latency without load (one connection): what the agent adds to one request. Tails are what
# this noisy machine disturbs most, so the two alternate for LAT_ROUNDS rounds and the table shows
# the median of each figure.
for r in $(seq 1 "$LAT_ROUNDS"); do
  wrk_row "HAProxy plain proxy, 1 connection" "lat_plain.$r" "$PLAIN_URL" "" 1 "$LAT_DURATION" 1s
  wrk_row "HAProxy + agent, one token, cached, 1 connection" "lat_one.$r" "$PROXY_URL" token-one.lua 1 \
    "$LAT_DURATION" 1s
done

# ---- micro-benchmarks ----------------------------------------------------------------------------
MICRO_OUT=$WORK/micro.txt
: >"$MICRO_OUT"
if [ "$MICRO" = 1 ]; then
  log "micro-benchmarks"
  if [ -x "$BUILD/tests/bench_decision" ]; then
    "${sut[@]}" "$BUILD/tests/bench_decision" 1000000 >"$WORK/bench_decision.txt" 2>&1 || true
    BENCH_BUILD_DIR=$BUILD "$HERE/run-callgrind.sh" >"$WORK/callgrind.txt" 2>&1 || true
  fi
  if [ -x "$BUILD/tests/bench_cache" ]; then
    "${sut[@]}" "$BUILD/tests/bench_cache" >"$WORK/bench_cache.txt" 2>&1 || true
  fi
fi

# ---- the table -----------------------------------------------------------------------------------
$PY - "$RESULTS" "$WORK" "$PIN_NOTE" "$THREADS" "$CONNS" "$DURATION" "$JWT_SIZE" <<'EOF'
import json, os, re, sys
results, work, pin, threads, conns, duration, jwt_size = sys.argv[1:8]
rows = [l.rstrip("\n").split("\t") for l in open(results) if l.strip()]

# Rounds ("lat_plain.1", "lat_plain.2", ...) collapse into one row of medians.
def median(xs):
    xs = sorted(xs)
    return xs[len(xs) // 2] if len(xs) % 2 else (xs[len(xs) // 2 - 1] + xs[len(xs) // 2]) / 2
merged, groups = [], {}
for r in rows:
    base = r[0].split(".")[0]
    if base != r[0]:
        if base not in groups:
            groups[base] = []
            merged.append(base)
        groups[base].append(r)
    else:
        merged.append(r)
rows = []
for m in merged:
    if isinstance(m, list):
        rows.append(m)
        continue
    g = groups[m]
    name = g[0][1] + " (median of %d)" % len(g)
    cpu = {"cpu": {}, "us_per_req": {}}
    for part in ("cpu", "us_per_req"):
        for k in json.loads(g[0][8])[part]:
            cpu[part][k] = median([json.loads(x[8])[part].get(k) or 0.0 for x in g])
    cpu["p90"] = median([json.loads(x[8])["p90"] for x in g])
    rows.append([m, name] + ["%.3f" % median([float(x[i]) for x in g]) for i in (2, 3, 4)] +
                [str(sum(int(x[i]) for x in g)) for i in (5, 6, 7)] + [json.dumps(cpu)])
by = {r[0]: r for r in rows}
ceiling = float(by["plain"][2])
print()
print("phantom-token-agent benchmark: wrk -t%s -c%s -d%s, JWT %s bytes; %s"
      % (threads, conns, duration, jwt_size, pin))
print()
hdr = ["row", "req/s", "p50", "p99", "IdP calls", "ratio to ceiling"]
table = []
for key, name, rps, p50, p99, calls, bad, reqs, _ in rows:
    ratio = "n/a" if key == "coalesce" else "%.2f" % (float(rps) / ceiling)
    if key == "lat_one":
        ratio = "%.2f" % (float(rps) / float(by["lat_plain"][2])) + " (of 1-conn plain)"
    if key == "lat_plain":
        ratio = "1.00 (of itself)"
    note = "" if bad == "0" else "  [%s of %s failed or non-2xx]" % (bad, reqs)
    table.append([name + note, "%.0f" % float(rps), p50 + " ms", p99 + " ms", calls, ratio])
w = [max(len(hdr[i]), *(len(r[i]) for r in table)) for i in range(len(hdr))]
line = lambda cells: "| " + " | ".join(c.ljust(w[i]) if i == 0 else c.rjust(w[i]) for i, c in enumerate(cells)) + " |"
print(line(hdr))
print("|" + "|".join("-" * (x + 2) for x in w) + "|")
for r in table:
    print(line(r))

print()
print("Where the CPU went during each wrk run: busy % of each CPU, and CPU microseconds per request")
print("of each process (user + system, from /proc; 10 ms tick resolution).")
print()
procs = ["haproxy-plain", "haproxy-agent", "agent", "backend", "idp-stub"]
ct = []
for r in rows:
    if r[0] == "coalesce":
        continue
    info = json.loads(r[8])
    cpus = " ".join("%s %5.1f%%" % (c, v) for c, v in sorted(info["cpu"].items()))
    ct.append([r[1], cpus] + ["%.2f" % info["us_per_req"][p] if info["us_per_req"].get(p) else "-" for p in procs])
ch = ["row", "CPU busy"] + [p + " us/req" for p in procs]
cw = [max(len(ch[i]), *(len(x[i]) for x in ct)) for i in range(len(ch))]
cl = lambda cells: "| " + " | ".join(c.ljust(cw[i]) if i < 2 else c.rjust(cw[i]) for i, c in enumerate(cells)) + " |"
print(cl(ch))
print("|" + "|".join("-" * (x + 2) for x in cw) + "|")
for x in ct:
    print(cl(x))

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
def verdict(ok):
    return "MET" if ok else "NOT MET"
one = by["one"]
r = float(one[2]) / ceiling
print("%-8s cached path >= 0.85x plain req/s: %.2fx" % (verdict(r >= 0.85), r))
# CPU per request is far steadier than req/s on a shared machine: the same ratio from it, and what
# it would be with an agent that cost nothing (HAProxy's own SPOE work only).
up = json.loads(by["plain"][8])["us_per_req"].get("haproxy-plain")
ua = json.loads(one[8])["us_per_req"]
if up and ua.get("haproxy-agent") and ua.get("agent"):
    print("(info)   same ratio from CPU per request: %.2fx (plain HAProxy %.1f us; HAProxy with SPOE %.1f us"
          " + agent %.1f us); with a zero-cost agent: %.2fx"
          % (up / (ua["haproxy-agent"] + ua["agent"]), up, ua["haproxy-agent"], ua["agent"],
             up / ua["haproxy-agent"]))
if "lat_one" in by and "lat_plain" in by:
    # Each round runs plain then agent back to back: the median of the per-round differences
    # cancels the slow drifts of the shared machine better than a difference of medians.
    lp, lo = by["lat_plain"], by["lat_one"]
    pairs = list(zip(groups["lat_plain"], groups["lat_one"]))
    d = lambda i: median([float(b[i]) - float(a[i]) for a, b in pairs])
    added, added50 = d(4), d(3)
    added90 = median([json.loads(b[8])["p90"] - json.loads(a[8])["p90"] for a, b in pairs])
    noisy = float(lp[4]) > 10 * float(lp[3])
    print("%-8s p99 added latency <= 0.3 ms (1 connection, unloaded; median of %d paired rounds): "
          "%+.3f ms (p50 %+.3f ms, p90 %+.3f ms)"
          % (verdict(added <= 0.3) + ("*" if noisy else ""), len(pairs), added, added50, added90))
    print("         per round p99 plain/agent: %s" % ", ".join(
        "%s/%s ms" % (a[4], b[4]) for a, b in pairs))
    if noisy:
        print("         * plain HAProxy's own p99 is %s ms against a p50 of %s ms: the p99 tail here is"
              % (lp[4], lp[3]))
        print("           the shared machine's scheduling noise, not the agent; trust p50/p90 and the"
              " ratios.")
loaded = float(one[4]) - float(by["plain"][4])
print("%-8s p99 added latency at -c%s (loaded; includes queueing): %.3f ms"
      % ("(info)", conns, loaded))
co = by["coalesce"]
print("%-8s coalescing: exactly 1 IdP call for %s concurrent requests: %s call(s), %s failed"
      % (verdict(co[5] == "1" and co[6] == "0"), co[7], co[5], co[6]))
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
EOF
