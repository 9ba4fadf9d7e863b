#!/usr/bin/env bash
# The benchmark: for each HAProxy binary given, HAProxy as a plain proxy (the ceiling, no rules),
# the same with the shipped route rules, HAProxy + phantom-token-agent with the SHIPPED
# haproxy-conf/haproxy.cfg and spoe/phantom-token.conf, and the peers an operator would pick
# instead, measured in the same run: HAProxy + Lua phantom token (same binary, with the same access
# log and tune.bufsize as every other HAProxy row, and once more as shipped) and nginx + Curity's
# phantom token module (when ../shared/peers/ has them). Prints one table per HAProxy version (req/s,
# p50, p99, IdP calls, ratio to plain, ratio to the best peer), where the CPU went, then the
# agent-only micro-benchmarks and which targets are met.
#
# Usage: contrib/bench/run-bench.sh [HAPROXY_BINARY...]    (default: BENCH_HAPROXY, PTA_HAPROXY or
#        the haproxy in PATH; root or sudo only to install wrk/valgrind/nginx when missing)
#   e.g. contrib/bench/run-bench.sh /usr/sbin/haproxy ../shared/haproxy/v3.4.0/haproxy
# Environment (all optional):
#   PTA_AGENT=/path/to/phantom-token-agent   use this binary instead of building one
#   BENCH_BUILD_DIR=DIR        where to build (default: <repo>/build-bench)
#   BENCH_THREADS=2 BENCH_CONNECTIONS=50 BENCH_DURATION=5s BENCH_ROUNDS=3 BENCH_WARMUP=2s
#                              wrk settings; the cached-path rows (plain, plain + routes, agent,
#                              peers) alternate BENCH_ROUNDS times and the table shows medians
#   BENCH_LONG_DURATION=10s    the 10 000-tokens and miss rows (once each)
#   BENCH_LAT_DURATION=5s BENCH_LAT_ROUNDS=3   the two latency rows (1 connection, unloaded)
#   BENCH_NTOKENS=10000        distinct tokens of the "many tokens" row
#   BENCH_COALESCE_N=1000 BENCH_COALESCE_DELAY_MS=200   the coalescing row
#   BENCH_JWT_SIZE=849         bytes of the JWT the IdP stub returns
#   BENCH_PIN=1                pin the gateways, agent, backend and IdP stub to BENCH_SUT_CPUS,
#   BENCH_SUT_CPUS=1 BENCH_AUX_CPUS=0   and wrk to BENCH_AUX_CPUS (../shared/peers/README.md)
#   BENCH_PEERS_DIR=DIR        the peers (default <repo>/../shared/peers); BENCH_PEERS=0 skips them
#   BENCH_MICRO=1              also run bench_decision, callgrind and bench_cache (0: skip)
#   BENCH_FASTPATH=1           also measure the fast path (decisions cached in HAProxy's map; the
#                              agent's default fastpath-ttl of 10 s): one token, 10 000 tokens
#   BENCH_FASTPATH_TTL=        the fast-path agent's --fastpath-ttl (default: the agent's own)
#   BENCH_KEEP_LOGS=0          1: keep the work directory (logs of every process)
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
HERE=$REPO/contrib/bench
THREADS=${BENCH_THREADS:-2}
CONNS=${BENCH_CONNECTIONS:-50}
DURATION=${BENCH_DURATION:-5s}
ROUNDS=${BENCH_ROUNDS:-3}
WARMUP=${BENCH_WARMUP:-2s}
LONG_DURATION=${BENCH_LONG_DURATION:-10s}
LAT_DURATION=${BENCH_LAT_DURATION:-5s}
LAT_ROUNDS=${BENCH_LAT_ROUNDS:-3}
NTOKENS=${BENCH_NTOKENS:-10000}
COALESCE_N=${BENCH_COALESCE_N:-1000}
COALESCE_DELAY_MS=${BENCH_COALESCE_DELAY_MS:-200}
JWT_SIZE=${BENCH_JWT_SIZE:-849}
PIN=${BENCH_PIN:-1}
SUT_CPUS=${BENCH_SUT_CPUS:-1}
AUX_CPUS=${BENCH_AUX_CPUS:-0}
MICRO=${BENCH_MICRO:-1}
PEERS_DIR=${BENCH_PEERS_DIR:-$REPO/../shared/peers}
PY=python3
HAPROXYS=("$@")
if [ ${#HAPROXYS[@]} -eq 0 ]; then
  read -ra HAPROXYS <<<"${BENCH_HAPROXY:-${PTA_HAPROXY:-$(command -v haproxy || echo /usr/sbin/haproxy)}}"
fi

log() { printf '%s\n' "bench: $*" >&2; }
die() { log "$*"; exit 1; }

# ---- tools ---------------------------------------------------------------------------------------
need_nginx=0
[ "${BENCH_PEERS:-1}" = 1 ] && [ -f "$PEERS_DIR/nginx-curity/ngx_curity_http_phantom_token_module.so" ] &&
  need_nginx=1
if ! command -v wrk >/dev/null || ! command -v valgrind >/dev/null || ! command -v curl >/dev/null ||
   { [ $need_nginx = 1 ] && ! [ -x /usr/sbin/nginx ]; }; then
  log "installing the benchmark's dependencies"
  "$REPO/contrib/install-deps.sh" bench
fi
for h in "${HAPROXYS[@]}"; do
  "$h" -v >/dev/null 2>&1 || die "cannot run HAProxy $h (see ../shared/haproxy/README.md)"
done
# The benchmark's API server always runs on the same HAProxy, whatever is being measured.
BACKEND_HAPROXY=${BENCH_BACKEND_HAPROXY:-$(command -v haproxy || echo "${HAPROXYS[0]}")}

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
  PIN_NOTE="pinned: gateway, agent, backend, IdP stub on CPU $SUT_CPUS; wrk on CPU $AUX_CPUS"
else
  PIN_NOTE="not pinned ($ncpu CPUs; BENCH_PIN=$PIN)"
fi

# ---- processes -----------------------------------------------------------------------------------
WORK=$(mktemp -d "${TMPDIR:-/tmp}/pta-bench.XXXXXX")
PIDS=()
declare -A GW # the gateways of the server being measured: name -> pid (for the CPU table)
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

# start_gw NAME PORT CMD...: a gateway under test, pinned, recorded in GW for the CPU table.
start_gw() {
  local name=$1 port=$2; shift 2
  "${sut[@]}" "$@" >/dev/null 2>"$WORK/$name.log" &
  PIDS+=($!); GW[$name]=$!
  wait_port "$port" "$name" $!
}

stop_gws() {
  local n
  for n in "${!GW[@]}"; do kill "${GW[$n]}" 2>/dev/null || true; wait "${GW[$n]}" 2>/dev/null || true; done
  GW=()
}

BACKEND_PORT=$(free_port)
BENCH_BACKEND_BIND=127.0.0.1:$BACKEND_PORT "${sut[@]}" "$BACKEND_HAPROXY" -db \
  -f "$HERE/haproxy-backend.cfg" >"$WORK/backend.log" 2>&1 &
PIDS+=($!); BACKEND_PID=$!; wait_port "$BACKEND_PORT" backend $!

start_ready stub "${sut[@]}" $PY "$HERE/idp_stub.py" --port 0 --jwt-size "$JWT_SIZE"
STUB_PORT=$READY_PORT STUB_PID=$READY_PID
STUB=http://127.0.0.1:$STUB_PORT

AGENT_PORT=$(free_port)
# The fast path: one stats socket path that each HAProxy version's fast-path gateway binds in turn
# (the agent sees a new process, and re-fills it); the map and the key file they share.
FASTPATH=${BENCH_FASTPATH:-1}
FP_SOCK=$WORK/fp.sock FP_MAP=$WORK/fp.map FP_KEY=$WORK/fp-key.map
fp_args=()
if [ "$FASTPATH" = 1 ]; then
  : >"$FP_MAP"
  (umask 077; printf 'fastpath-key %s\n' "$(openssl rand -base64 32)" >"$FP_KEY")
  fp_args=(--fastpath-socket "unix:$FP_SOCK" --fastpath-map "$FP_MAP" --fastpath-key-file "$FP_KEY")
  [ -n "${BENCH_FASTPATH_TTL:-}" ] && fp_args+=(--fastpath-ttl "$BENCH_FASTPATH_TTL")
fi
"${sut[@]}" "$AGENT" --listen "127.0.0.1:$AGENT_PORT" --log-level warn --client-auth none \
  --introspection-url "$STUB/introspect" >"$WORK/agent.log" 2>&1 &
PIDS+=($!); AGENT_PID=$!; wait_port "$AGENT_PORT" agent $!
# The fast-path gateway has an agent of its own: an agent publishes every decision it makes, so a
# shared one would write the other rows' decisions into the fast-path gateway's map (CPU there).
AGENT_FP_PORT="" AGENT_FP_PID=""
if [ "$FASTPATH" = 1 ]; then
  AGENT_FP_PORT=$(free_port)
  "${sut[@]}" "$AGENT" --listen "127.0.0.1:$AGENT_FP_PORT" --log-level warn --client-auth none \
    --introspection-url "$STUB/introspect" "${fp_args[@]}" >"$WORK/agent-fp.log" 2>&1 &
  PIDS+=($!); AGENT_FP_PID=$!; wait_port "$AGENT_FP_PORT" agent-fp $!
fi

stub_post() { curl -sf -o /dev/null -X POST -H 'Content-Type: application/json' --data-binary "$2" "$STUB$1"; }
stub_calls() { curl -sf "$STUB/_control/stats" | $PY -c 'import json,sys; print(json.load(sys.stdin)["calls"])'; }

cpu_snap() {
  local args=(agent="$AGENT_PID" backend="$BACKEND_PID" idp-stub="$STUB_PID") n
  [ -n "$AGENT_FP_PID" ] && args+=(agent-fp="$AGENT_FP_PID")
  for n in "${!GW[@]}"; do args+=("$n=${GW[$n]}"); done
  $PY "$HERE/cpustat.py" "${args[@]}"
}

fp_entries() { # how many entries the fast-path gateway's map holds
  $PY - "$FP_SOCK" "$FP_MAP" <<'EOF'
import socket, sys
s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); s.sendall(b"show map %s\n" % sys.argv[2].encode())
out = b""
while True:
    b = s.recv(65536)
    if not b: break
    out += b
print(sum(1 for l in out.splitlines() if l.startswith(b"0x")))
EOF
}

wait_200() { # url, token (empty: none)
  local i code hdr=()
  [ -n "$2" ] && hdr=(-H "Authorization: Bearer $2")
  for i in $(seq 1 100); do
    code=$(curl -s -o /dev/null -w '%{http_code}' "${hdr[@]}" "$1" || true)
    [ "$code" = 200 ] && return 0
    sleep 0.1
  done
  die "$1 never answered 200 (last: $code); see $WORK"
}

RUN_ID=$(date +%s)-$$
TOKEN=bench-one-$RUN_ID
stub_post /_control/tokens "{\"token\": \"$TOKEN\"}"
export BENCH_TOKEN=$TOKEN

# ---- rows ----------------------------------------------------------------------------------------
RESULTS=$WORK/results.tsv
: >"$RESULTS"
SERVER="" # the version label of the gateway being measured (first column of the table)

# wrk_row key name url script conns duration [warmup]; appends:
# server key name rps p50 p99 calls non2xx reqs {cpu...}
wrk_row() {
  local key=$1 name=$2 url=$3 script=$4 conns=$5 dur=$6 warm=${7:-0} sargs=() t=$THREADS
  [ -n "$script" ] && sargs=(-s "$HERE/$script")
  [ "$conns" -lt "$t" ] && t=$conns # wrk needs a connection per thread
  if [ "$warm" != 0 ]; then
    "${aux[@]}" wrk -t"$t" -c"$conns" -d"$warm" "${sargs[@]}" "$url" >/dev/null
  fi
  local before after
  before=$(stub_calls)
  cpu_snap >"$WORK/$key.cpu0"
  "${aux[@]}" wrk -t"$t" -c"$conns" -d"$dur" --latency "${sargs[@]}" "$url" >"$WORK/$key.wrk"
  cpu_snap >"$WORK/$key.cpu1"
  after=$(stub_calls)
  $PY - "$WORK/$key.wrk" "$SERVER" "$key" "$name" $((after - before)) "$WORK/$key.cpu0" \
    "$WORK/$key.cpu1" >>"$RESULTS" <<'EOF'
import json, re, sys
path, server, key, name, calls, c0, c1 = sys.argv[1:8]
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
print("\t".join([server, key, name, "%.1f" % rps, "%.3f" % lat["50"], "%.3f" % lat["99"], calls,
                 str(bad), str(reqs), json.dumps({"cpu": cpu, "us_per_req": per_req, "p90": lat["90"]})]))
EOF
  log "$(tail -1 "$RESULTS" | cut -f1,3-9)"
}

# rounds "key|name|url|script" ...: each row warmed up once, then all of them alternated ROUNDS
# times (the shared machine drifts; alternating spreads the drift over every row).
rounds() {
  local spec key name url script r
  for spec in "$@"; do
    IFS='|' read -r key name url script <<<"$spec"
    "${aux[@]}" wrk -t"$THREADS" -c"$CONNS" -d"$WARMUP" ${script:+-s "$HERE/$script"} "$url" >/dev/null
  done
  for r in $(seq 1 "$ROUNDS"); do
    for spec in "$@"; do
      IFS='|' read -r key name url script <<<"$spec"
      wrk_row "$key.$r" "$name" "$url" "$script" "$CONNS" "$DURATION"
    done
  done
}

# miss_row key name url tag: every request a token never seen before (the IdP stub must answer
# every token active); the warm-up uses other tokens than the measured run, so nothing it cached
# is hit.
miss_row() {
  export BENCH_PREFIX=bench-warm-$RUN_ID-$4-
  "${aux[@]}" wrk -t"$THREADS" -c"$CONNS" -d"$WARMUP" -s "$HERE/token-new.lua" "$3" >/dev/null
  export BENCH_PREFIX=bench-new-$RUN_ID-$4-
  wrk_row "$1" "$2" "$3" token-new.lua "$CONNS" "$LONG_DURATION"
}

# The Lua peer's haproxy-lua.cfg with what every other HAProxy row has and the peer's file leaves
# out: the access log (one line per request to stdout, as haproxy-conf/haproxy.cfg and the plain
# rows do) and tune.bufsize 32768. Nothing else changes.
lua_cfg_same_settings() {
  local out
  out=$(sed -e 's/^global$/global\n    log stdout format raw local0 info\n    tune.bufsize 32768/' \
    -e 's/^defaults$/defaults\n    log global\n    option httplog/' "$PEERS_DIR/haproxy-lua/haproxy-lua.cfg")
  [[ $out == *"option httplog"* && $out == *"tune.bufsize 32768"* ]] ||
    die "cannot add the access log to $PEERS_DIR/haproxy-lua/haproxy-lua.cfg (no global/defaults line)"
  printf '%s\n' "$out"
}

lua_ok() { # haproxy binary
  [ "${BENCH_PEERS:-1}" = 1 ] && [ -f "$PEERS_DIR/haproxy-lua/phantom.lua" ] &&
    [[ $("$1" -vv 2>/dev/null) == *$'\nBuilt with Lua'* ]]
}

bench_haproxy() { # haproxy binary
  local H=$1 v
  v=$("$H" -v | awk 'NR==1{print $3}')
  SERVER="HAProxy $v"
  log "== $SERVER ($H)"
  local plain=$(free_port) routes=$(free_port) proxy=$(free_port) lua=""
  start_gw haproxy-plain "$plain" env PHANTOM_BIND=127.0.0.1:$plain \
    PHANTOM_BACKEND=127.0.0.1:$BACKEND_PORT "$H" -db -f "$HERE/haproxy-plain-bare.cfg"
  start_gw haproxy-routes "$routes" env PHANTOM_BIND=127.0.0.1:$routes \
    PHANTOM_BACKEND=127.0.0.1:$BACKEND_PORT "$H" -db -f "$HERE/haproxy-plain.cfg"
  start_gw haproxy-agent "$proxy" env PHANTOM_BIND=127.0.0.1:$proxy \
    PHANTOM_BACKEND=127.0.0.1:$BACKEND_PORT PHANTOM_AGENT=127.0.0.1:$AGENT_PORT \
    PHANTOM_SPOE_CONF="$REPO/spoe/phantom-token.conf" "$H" -db -f "$REPO/haproxy-conf/haproxy.cfg"
  local specs=("plain|HAProxy plain proxy, no rules (the ceiling)|http://127.0.0.1:$plain/api/bench|"
               "routes|HAProxy plain + the shipped route rules|http://127.0.0.1:$routes/api/bench|"
               "one|HAProxy + agent, shipped cfg, one token, cached|http://127.0.0.1:$proxy/api/bench|token-one.lua")
  local fp=""
  if [ "$FASTPATH" = 1 ]; then
    fp=$(free_port)
    start_gw haproxy-fastpath "$fp" env PHANTOM_BIND=127.0.0.1:$fp \
      PHANTOM_BACKEND=127.0.0.1:$BACKEND_PORT PHANTOM_AGENT=127.0.0.1:$AGENT_FP_PORT \
      PHANTOM_SPOE_CONF="$REPO/spoe/phantom-token.conf" PHANTOM_STATS_SOCKET="$FP_SOCK" \
      PHANTOM_FASTPATH_MAP="$FP_MAP" PHANTOM_FASTPATH_KEY="$FP_KEY" "$H" -db -f "$REPO/haproxy-conf/haproxy.cfg"
    wait_200 "http://127.0.0.1:$fp/api/bench" "$TOKEN"
    for i in $(seq 1 50); do [ "$(fp_entries)" -ge 1 ] && break; sleep 0.1; done
    [ "$(fp_entries)" -ge 1 ] || die "the agent published nothing into $SERVER's map; see $WORK/agent-fp.log"
    specs+=("fp-one|HAProxy + agent + fast path, shipped cfg, one token, cached|http://127.0.0.1:$fp/api/bench|token-one.lua")
  fi
  if lua_ok "$H"; then
    # The Lua peer twice: with the access log and buffer size every other HAProxy row here has
    # (the comparison), and its file as shipped, which logs nothing (shown, about 12 % faster).
    lua=$(free_port) lua_asis=$(free_port)
    lua_cfg_same_settings >"$WORK/haproxy-lua.cfg"
    start_gw haproxy-lua "$lua" env PHANTOM_LUA="$PEERS_DIR/haproxy-lua/phantom.lua" \
      PHANTOM_BIND=127.0.0.1:$lua PHANTOM_BACKEND=127.0.0.1:$BACKEND_PORT \
      PHANTOM_INTROSPECT_URL="$STUB/introspect" "$H" -db -f "$WORK/haproxy-lua.cfg"
    start_gw haproxy-lua-asis "$lua_asis" env PHANTOM_LUA="$PEERS_DIR/haproxy-lua/phantom.lua" \
      PHANTOM_BIND=127.0.0.1:$lua_asis PHANTOM_BACKEND=127.0.0.1:$BACKEND_PORT \
      PHANTOM_INTROSPECT_URL="$STUB/introspect" "$H" -db -f "$PEERS_DIR/haproxy-lua/haproxy-lua.cfg"
    wait_200 "http://127.0.0.1:$lua/api/bench" "$TOKEN"
    wait_200 "http://127.0.0.1:$lua_asis/api/bench" "$TOKEN"
    specs+=("lua-one|peer: HAProxy + Lua phantom token, cached (same access log and bufsize)|http://127.0.0.1:$lua/api/bench|token-one.lua"
            "lua-asis-one|peer: HAProxy + Lua phantom token, cached, its cfg as shipped (no access log)|http://127.0.0.1:$lua_asis/api/bench|token-one.lua")
  else
    log "no Lua peer for $SERVER (no Lua in this build, or no $PEERS_DIR/haproxy-lua)"
  fi
  wait_200 "http://127.0.0.1:$proxy/api/bench" "$TOKEN"
  wait_200 "http://127.0.0.1:$plain/api/bench" ""
  rounds "${specs[@]}"
  local PROXY_URL=http://127.0.0.1:$proxy/api/bench

  # 10 000 distinct tokens, all cached after the warm-up.
  export BENCH_NTOKENS=$NTOKENS BENCH_PREFIX=bench-many-$RUN_ID-$v-
  $PY -c 'import json,sys; n,p=int(sys.argv[1]),sys.argv[2]; print(json.dumps({"tokens":[p+str(i) for i in range(n)]}))' \
    "$NTOKENS" "$BENCH_PREFIX" >"$WORK/tokens.json"
  stub_post /_control/tokens "@$WORK/tokens.json"
  local before i warm_calls
  before=$(stub_calls)
  for i in 1 2 3 4 5 6; do # until every token has been introspected once
    "${aux[@]}" wrk -t"$THREADS" -c"$CONNS" -d3s -s "$HERE/token-many.lua" "$PROXY_URL" >/dev/null
    [ $(($(stub_calls) - before)) -ge "$NTOKENS" ] && break
  done
  warm_calls=$(($(stub_calls) - before))
  [ "$warm_calls" -ge "$NTOKENS" ] || log "warning: only $warm_calls of $NTOKENS tokens introspected in the warm-up"
  wrk_row many "HAProxy + agent, $NTOKENS distinct tokens, cached" "$PROXY_URL" token-many.lua \
    "$CONNS" "$LONG_DURATION"
  if [ -n "$fp" ]; then # the same tokens, now published into the map by their first request
    "${aux[@]}" wrk -t"$THREADS" -c"$CONNS" -d3s -s "$HERE/token-many.lua" "http://127.0.0.1:$fp/api/bench" >/dev/null
    log "fast-path map: $(fp_entries) entries"
    wrk_row fp-many "HAProxy + agent + fast path, $NTOKENS distinct tokens, cached" \
      "http://127.0.0.1:$fp/api/bench" token-many.lua "$CONNS" "$LONG_DURATION"
    # Stop it now: its agent deletes the 10 000 entries as they end, and on 2.6 each "del map"
    # walks the whole map, CPU that the next rows would pay for.
    kill "${GW[haproxy-fastpath]}" 2>/dev/null || true
    wait "${GW[haproxy-fastpath]}" 2>/dev/null || true
    unset 'GW[haproxy-fastpath]'
  fi

  # Every request a new token: the miss path, for the agent and the Lua peer (with the access log).
  stub_post /_control/mode '{"all_active": true}'
  miss_row miss "HAProxy + agent, every request a new token (miss)" "$PROXY_URL" "agent-$v"
  if [ -n "$lua" ]; then
    miss_row lua-miss "peer: HAProxy + Lua, every request a new token" "http://127.0.0.1:$lua/api/bench" \
      "lua-$v"
  fi

  # Coalescing: COALESCE_N concurrent requests, one new token, the IdP answers after a delay.
  stub_post /_control/mode "{\"all_active\": true, \"delay_ms\": $COALESCE_DELAY_MS}"
  sleep 1 # let the miss rows' last introspections drain
  before=$(stub_calls)
  ulimit -n 65536 2>/dev/null || true
  "${aux[@]}" $PY "$HERE/coalesce.py" --port "$proxy" --token "bench-coalesce-$RUN_ID-$v" \
    -n "$COALESCE_N" >"$WORK/coalesce.json"
  local after
  after=$(stub_calls)
  $PY - "$WORK/coalesce.json" $((after - before)) "$COALESCE_N" "$COALESCE_DELAY_MS" "$SERVER" >>"$RESULTS" <<'EOF'
import json, sys
d = json.load(open(sys.argv[1]))
name = "HAProxy + agent, %s concurrent, one new token (IdP +%s ms)" % (sys.argv[3], sys.argv[4])
print("\t".join([sys.argv[5], "coalesce", name, "%.1f" % d["req_per_s"], "%.3f" % d["p50_ms"],
                 "%.3f" % d["p99_ms"], sys.argv[2], str(d["requests"] - d["ok"]), str(d["requests"]), "{}"]))
EOF
  log "$(tail -1 "$RESULTS" | cut -f1,3-9)"
  stub_post /_control/mode '{}'

  # Latency without load (one connection): what the agent adds to one request, alternated.
  local r
  for r in $(seq 1 "$LAT_ROUNDS"); do
    wrk_row "lat_plain.$r" "HAProxy plain proxy, 1 connection" "http://127.0.0.1:$plain/api/bench" "" 1 \
      "$LAT_DURATION" 1s
    wrk_row "lat_one.$r" "HAProxy + agent, one token, cached, 1 connection" "$PROXY_URL" token-one.lua 1 \
      "$LAT_DURATION" 1s
  done
  stop_gws
}

bench_nginx() {
  local so=$PEERS_DIR/nginx-curity/ngx_curity_http_phantom_token_module.so
  local v plain curity run=$WORK/nginx basic
  v=$(/usr/sbin/nginx -v 2>&1 | sed 's/.*nginx\///')
  SERVER="nginx $v"
  log "== $SERVER + Curity phantom token module"
  mkdir -p "$run"
  chmod 755 "$WORK" "$run" # nginx's workers run unprivileged (cache and temp files)
  plain=$(free_port) curity=$(free_port)
  basic=$(printf 'bench-client:bench-secret' | base64)
  sed -e "s#@RUN@#$run#g" -e "s#@LISTEN@#127.0.0.1:$plain#" -e "s#@BACKEND@#127.0.0.1:$BACKEND_PORT#" \
    "$HERE/nginx-plain.conf.in" >"$run/plain.conf"
  sed -e "s#@MODULE_SO@#$so#" -e "s#@RUN@#$run#g" -e "s#@LISTEN@#127.0.0.1:$curity#" \
    -e "s#@BACKEND@#127.0.0.1:$BACKEND_PORT#" -e "s#@IDP@#127.0.0.1:$STUB_PORT#" \
    -e "s#@CLIENT_BASIC@#$basic#" "$PEERS_DIR/nginx-curity/nginx-gw.conf.in" >"$run/curity.conf"
  start_gw nginx-plain "$plain" /usr/sbin/nginx -c "$run/plain.conf" -p "$run/" -g 'daemon off; master_process off;'
  start_gw nginx-curity "$curity" /usr/sbin/nginx -c "$run/curity.conf" -p "$run/" \
    -g 'daemon off; master_process off;'
  wait_200 "http://127.0.0.1:$curity/api/bench" "$TOKEN"
  rounds "plain|nginx plain proxy (the nginx ceiling)|http://127.0.0.1:$plain/api/bench|" \
    "curity-one|peer: nginx + Curity module, proxy_cache hit|http://127.0.0.1:$curity/api/bench|token-one.lua"
  stub_post /_control/mode '{"all_active": true}'
  miss_row curity-miss "peer: nginx + Curity module, every request a new token" \
    "http://127.0.0.1:$curity/api/bench" nginx
  stub_post /_control/mode '{}'
  stop_gws
}

log "$PIN_NOTE"
log "wrk -t$THREADS -c$CONNS -d$DURATION x $ROUNDS rounds (warm-up $WARMUP) against each"
for h in "${HAPROXYS[@]}"; do
  bench_haproxy "$h"
done
if [ $need_nginx = 1 ] && [ -x /usr/sbin/nginx ]; then
  bench_nginx
else
  log "no nginx + Curity peer (needs /usr/sbin/nginx and $PEERS_DIR/nginx-curity)"
fi

# ---- micro-benchmarks ----------------------------------------------------------------------------
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

# ---- the tables ----------------------------------------------------------------------------------
$PY "$HERE/bench_report.py" "$RESULTS" "$WORK" "$PIN_NOTE" "$THREADS" "$CONNS" "$DURATION" \
  "$ROUNDS" "$JWT_SIZE"
