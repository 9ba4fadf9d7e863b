#!/usr/bin/env bash
# The "two agents, shared L2" benchmark row: two agents behind one HAProxy (two servers in the
# phantom-agents backend of the SHIPPED haproxy.cfg) share one redis-server. BENCH_NTOKENS
# distinct tokens are introspected through agent 1; then agent 2, which has never seen them,
# serves them through HAProxy on one connection: every request is an L1 miss and an L2 hit.
# Prints one table: L2 hit, L1 hit and IdP (L2 miss) latency through HAProxy (p50/p99 over one
# connection, unloaded), and the IdP calls per distinct token for the whole fleet (must be 1).
# Agent 1 and agent 2 are steered with HAProxy's runtime API (maint + shutdown sessions).
#
# Usage: contrib/bench/bench-l2.sh
# Environment (all optional):
#   PTA_AGENT=/path/to/phantom-token-agent   else built in BENCH_BUILD_DIR (<repo>/build-bench)
#   BENCH_NTOKENS=20000     distinct tokens (more than one connection sends in BENCH_LAT_DURATION)
#   BENCH_LAT_DURATION=3s   each latency row
#   BENCH_JWT_SIZE=900      bytes of the JWT the IdP stub returns
#   BENCH_KEEP_LOGS=0       1: keep the work directory
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
HERE=$REPO/contrib/bench
NTOKENS=${BENCH_NTOKENS:-20000}
LAT_DURATION=${BENCH_LAT_DURATION:-3s}
JWT_SIZE=${BENCH_JWT_SIZE:-900}
HAPROXY=${PTA_HAPROXY:-$(command -v haproxy || echo /usr/sbin/haproxy)}
REDIS=${PTA_REDIS_SERVER:-$(command -v redis-server || echo /usr/bin/redis-server)}
PY=python3

log() { printf '%s\n' "bench-l2: $*" >&2; }
die() { log "$*"; exit 1; }

if ! command -v wrk >/dev/null || ! command -v curl >/dev/null || ! [ -x "$HAPROXY" ] ||
   ! [ -x "$REDIS" ]; then
  log "installing the benchmark's dependencies"
  "$REPO/contrib/install-deps.sh" bench
  HAPROXY=$(command -v haproxy || echo /usr/sbin/haproxy)
  REDIS=$(command -v redis-server || echo /usr/bin/redis-server)
fi

if [ -z "${PTA_AGENT:-}" ]; then
  BUILD=${BENCH_BUILD_DIR:-$REPO/build-bench}
  log "building in $BUILD"
  cmake -S "$REPO" -B "$BUILD" >"${TMPDIR:-/tmp}/pta-bench-l2-cmake.log" 2>&1 ||
    { cat "${TMPDIR:-/tmp}/pta-bench-l2-cmake.log" >&2; die "cmake failed"; }
  cmake --build "$BUILD" -j2 --target phantom-token-agent >"${TMPDIR:-/tmp}/pta-bench-l2-build.log" 2>&1 ||
    { tail -30 "${TMPDIR:-/tmp}/pta-bench-l2-build.log" >&2; die "cannot build the agent"; }
fi
AGENT=${PTA_AGENT:-$BUILD/phantom-token-agent}
[ -x "$AGENT" ] || die "no agent binary at $AGENT"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/pta-bench-l2.XXXXXX")
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

# ---- processes -----------------------------------------------------------------------------------
BACKEND_PORT=$(free_port)
BENCH_BACKEND_BIND=127.0.0.1:$BACKEND_PORT "$HAPROXY" -db -f "$HERE/haproxy-backend.cfg" \
  >"$WORK/backend.log" 2>&1 &
PIDS+=($!); wait_port "$BACKEND_PORT" backend $!

$PY "$HERE/idp_stub.py" --port 0 --jwt-size "$JWT_SIZE" >"$WORK/stub.out" 2>"$WORK/stub.log" &
PIDS+=($!); STUB_PID=$!
for i in $(seq 1 100); do
  grep -q '^READY ' "$WORK/stub.out" 2>/dev/null && break
  kill -0 "$STUB_PID" 2>/dev/null || die "IdP stub exited: $(cat "$WORK/stub.log")"
  sleep 0.1
done
STUB=http://127.0.0.1:$(awk '/^READY /{print $2; exit}' "$WORK/stub.out")

REDIS_PORT=$(free_port)
"$REDIS" --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no --dir "$WORK" \
  >"$WORK/redis.log" 2>&1 &
PIDS+=($!); wait_port "$REDIS_PORT" redis $!

FLEET_KEY=$WORK/fleet.key
(umask 077; openssl rand -base64 48 >"$FLEET_KEY")

declare -A AGENT_PORT HTTP_PORT
for a in 1 2; do
  AGENT_PORT[$a]=$(free_port)
  HTTP_PORT[$a]=$(free_port)
  "$AGENT" --listen "127.0.0.1:${AGENT_PORT[$a]}" --log-level warn --client-auth none \
    --introspection-url "$STUB/introspect" --http-listen "127.0.0.1:${HTTP_PORT[$a]}" \
    --cache-redis-url "redis://127.0.0.1:$REDIS_PORT/0" --fleet-key-file "$FLEET_KEY" \
    --cache-redis-prefix "bench:" >"$WORK/agent$a.log" 2>&1 &
  PIDS+=($!); wait_port "${AGENT_PORT[$a]}" "agent$a" $!
done

# The shipped haproxy.cfg with a second server line after agent1's.
sed -E 's/^([[:space:]]*)server agent1 ("[^"]*")(.*)$/&\n\1server agent2 "${PHANTOM_AGENT2}"\3/' \
  "$REPO/haproxy-conf/haproxy.cfg" >"$WORK/haproxy-fleet.cfg"
grep -q 'server agent2' "$WORK/haproxy-fleet.cfg" || die "cannot add agent2 to haproxy.cfg"
PROXY_PORT=$(free_port)
STATS=$WORK/haproxy.sock
PHANTOM_BIND=127.0.0.1:$PROXY_PORT PHANTOM_BACKEND=127.0.0.1:$BACKEND_PORT \
  PHANTOM_AGENT=127.0.0.1:${AGENT_PORT[1]} PHANTOM_AGENT2=127.0.0.1:${AGENT_PORT[2]} \
  PHANTOM_SPOE_CONF=$REPO/spoe/phantom-token.conf PHANTOM_STATS_SOCKET=$STATS \
  "$HAPROXY" -db -f "$WORK/haproxy-fleet.cfg" >/dev/null 2>"$WORK/haproxy.log" &
PIDS+=($!); wait_port "$PROXY_PORT" haproxy $!
URL=http://127.0.0.1:$PROXY_PORT/api/bench

hap() { # one runtime API command
  $PY -c 'import socket,sys; s=socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); s.sendall(sys.argv[2].encode()+b"\n"); print(s.makefile().read())' "$STATS" "$1"
}
sv_status() { hap "show stat" | awk -F, -v s="$1" '$1=="phantom-agents" && $2==s {print $18}'; }
route_to() { # 1 or 2: the other agent in maintenance, its SPOE connections shut
  local on=agent$1 off=agent$((3 - $1)) i
  hap "set server phantom-agents/$on state ready" >/dev/null
  for i in $(seq 1 100); do [ "$(sv_status "$on")" = UP ] && break; sleep 0.1; done
  [ "$(sv_status "$on")" = UP ] || die "$on never came UP"
  hap "set server phantom-agents/$off state maint" >/dev/null
  hap "shutdown sessions server phantom-agents/$off" >/dev/null
}
stub_post() { curl -sf -o /dev/null -X POST -H 'Content-Type: application/json' --data-binary "$2" "$STUB$1"; }
stub_calls() { curl -sf "$STUB/_control/stats" | $PY -c 'import json,sys; print(json.load(sys.stdin)["calls"])'; }
l2_hits() { # agent
  curl -sf "http://127.0.0.1:${HTTP_PORT[$1]}/metrics" |
    awk '/^phantom_l2_lookups_total\{result="hit"\}/ {print $2}'
}

RESULTS=$WORK/results.tsv
: >"$RESULTS"
# lat_row name script: one connection, LAT_DURATION; appends name rps p50 p99 requests idp-calls
lat_row() {
  local name=$1 script=$2 before after
  before=$(stub_calls)
  wrk -t1 -c1 -d"$LAT_DURATION" --latency -s "$HERE/$script" "$URL" >"$WORK/row.wrk"
  after=$(stub_calls)
  $PY - "$WORK/row.wrk" "$name" $((after - before)) >>"$RESULTS" <<'EOF'
import re, sys
text, name, calls = open(sys.argv[1]).read(), sys.argv[2], sys.argv[3]
def ms(v, u):
    return float(v) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[u]
lat = dict((p, ms(v, u)) for p, v, u in re.findall(r"^\s+(50|99)%\s+([\d.]+)(us|ms|s)\s*$", text, re.M))
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))
reqs = int(re.search(r"(\d+) requests in", text).group(1))
bad = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
if bad:
    sys.exit("%s: %s non-2xx answers" % (name, bad.group(1)))
print("\t".join([name, "%.0f" % rps, "%.3f" % lat["50"], "%.3f" % lat["99"], str(reqs), calls]))
EOF
  log "$(tail -1 "$RESULTS")"
}

# ---- the rows ------------------------------------------------------------------------------------
RUN_ID=$(date +%s)-$$
export BENCH_NTOKENS=$NTOKENS BENCH_PREFIX=bench-l2-$RUN_ID-
$PY -c 'import json,sys; n,p=int(sys.argv[1]),sys.argv[2]; print(json.dumps({"tokens":[p+str(i) for i in range(n)]}))' \
  "$NTOKENS" "$BENCH_PREFIX" >"$WORK/tokens.json"
stub_post /_control/tokens "@$WORK/tokens.json"

log "introspecting $NTOKENS tokens through agent 1"
route_to 1
for i in $(seq 1 10); do
  wrk -t1 -c20 -d3s -s "$HERE/token-many.lua" "$URL" >/dev/null
  [ "$(stub_calls)" -ge "$NTOKENS" ] && break
done
warm=$(stub_calls)
[ "$warm" -ge "$NTOKENS" ] || die "only $warm of $NTOKENS tokens introspected"

log "agent 2 serves them: L1 miss, L2 hit"
route_to 2
hits0=$(l2_hits 2)
lat_row "two agents, shared L2: L2 hit (agent 2, never saw the tokens)" token-many.lua
hits1=$(l2_hits 2)
l2_reqs=$(tail -1 "$RESULTS" | cut -f5)
total_calls=$(stub_calls)

export BENCH_TOKEN=${BENCH_PREFIX}1
lat_row "same agent, L1 hit (one token, cached)" token-one.lua
stub_post /_control/mode '{"all_active": true}'
export BENCH_PREFIX=bench-l2-new-$RUN_ID-
lat_row "L2 miss + IdP (every request a new token)" token-new.lua
stub_post /_control/mode '{}'

# ---- the table -----------------------------------------------------------------------------------
$PY - "$RESULTS" "$NTOKENS" "$total_calls" "$hits0" "$hits1" "$l2_reqs" "$JWT_SIZE" <<'EOF'
import sys
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1]) if l.strip()]
ntok, calls, h0, h1, l2_reqs, jwt = sys.argv[2:8]
hits = int(float(h1 or 0) - float(h0 or 0))
print("\nTwo agents behind one HAProxy, one Redis; %s-byte JWTs; latency through HAProxy, one "
      "connection (wrk -c1), unloaded" % jwt)
print("%-66s %8s %9s %9s %9s" % ("row", "req/s", "p50 ms", "p99 ms", "IdP calls"))
for name, rps, p50, p99, reqs, c in rows:
    print("%-66s %8s %9s %9s %9s" % (name, rps, p50, p99, c))
print("\nIdP calls per distinct token for the fleet: %.3f (%s calls, %s tokens)"
      % (int(calls) / int(ntok), calls, ntok))
print("L2 hits on agent 2 during its row: %d of %s requests" % (hits, l2_reqs))
EOF
