#!/usr/bin/env bash
# Phase-A prototype benchmark of the fast path (map pre-filled over the stats socket, no agent
# writes): HAProxy with no rules (ceiling), the shipped cfg through the agent, and the shipped cfg
# plus the fast-path rules, one cached token and 10 000 distinct cached tokens.
# Usage: bench-proto.sh HAPROXY_BINARY   (env: ROUNDS=3 DUR=8s CONNS=50 SUT_CPU=1 WRK_CPU=0 AGENT=...)
# FILL=socket (default): the map is pre-filled over the stats socket (phase-A prototype).
# FILL=agent: the agent publishes its decisions itself (fastpath-socket); the "fastpath" gateway
#   is the shipped cfg plus the fast-path rules; a warm-up pass publishes every token first.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
HAPROXY=${1:-/usr/sbin/haproxy}
ROUNDS=${ROUNDS:-3} DUR=${DUR:-8s} CONNS=${CONNS:-50} SUT_CPU=${SUT_CPU:-1} WRK_CPU=${WRK_CPU:-0}
AGENT=${AGENT:-$REPO/build/phantom-token-agent}
W=$(mktemp -d /tmp/fp-bench.XXXXXX)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  [ "${KEEP:-0}" = 1 ] && echo "logs kept in $W" >&2 || rm -rf "$W"
}
trap cleanup EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/$1) 2>/dev/null && return 0; sleep 0.1; done; echo "port $1 never up" >&2; exit 1; }

printf 'fastpath-key %s\n' "$(head -c 32 /dev/urandom | base64)" > "$W/key.map"; chmod 600 "$W/key.map"
: > "$W/fastpath.map"
BP=$(port); BENCH_BACKEND_BIND=127.0.0.1:$BP taskset -c "$SUT_CPU" "$HAPROXY" -db -f "$REPO/contrib/bench/haproxy-backend.cfg" >"$W/backend.log" 2>&1 & PIDS+=($!); BPID=$!; wait_port $BP
taskset -c "$SUT_CPU" python3 "$REPO/contrib/bench/idp_stub.py" --port 0 --jwt-size 849 >"$W/stub.out" 2>"$W/stub.log" & PIDS+=($!)
for _ in $(seq 100); do grep -q READY "$W/stub.out" && break; sleep 0.1; done
SP=$(awk '/READY/{print $2}' "$W/stub.out")
curl -s -X POST -d '{"all_active": true}' http://127.0.0.1:$SP/_control/mode >/dev/null
FILL=${FILL:-socket}
fp_args=()
[ "$FILL" = agent ] && fp_args=(--fastpath-socket "unix:$W/fastpath.sock" --fastpath-map "$W/fastpath.map"
  --fastpath-key-file "$W/key.map" --fastpath-ttl 300s --fastpath-max-entries 20000)
AP=$(port); taskset -c "$SUT_CPU" "$AGENT" --listen 127.0.0.1:$AP --log-level warn --client-auth none --introspection-url http://127.0.0.1:$SP/introspect "${fp_args[@]}" >"$W/agent.log" 2>&1 & PIDS+=($!); APID=$!; wait_port $AP
common=(PHANTOM_BACKEND=127.0.0.1:$BP PHANTOM_AGENT=127.0.0.1:$AP PHANTOM_SPOE_CONF=${SPOE_CONF:-$REPO/spoe/phantom-token.conf}
        PHANTOM_FASTPATH_KEY=$W/key.map PHANTOM_FASTPATH_MAP=$W/fastpath.map )
declare -A PORT GPID
start() { # name cfg
  PORT[$1]=$(port)
  env "${common[@]}" PHANTOM_FASTPATH_SOCKET=$W/$1.sock PHANTOM_BIND=127.0.0.1:${PORT[$1]} taskset -c "$SUT_CPU" "$HAPROXY" -db -f "$2" >/dev/null 2>"$W/$1.log" & PIDS+=($!)
  GPID[$1]=$!
  wait_port ${PORT[$1]}
}
start bare "$HERE/haproxy-bare.cfg"
start barejwt "$HERE/haproxy-bare-jwt.cfg"
# 3.3+ refuses a backend named like its frontend: the shipped cfg of the time gets its backend renamed.
sed 's/^    default_backend api$/    default_backend api-servers/; s/^backend api$/backend api-servers/' \
  "${SHIPPED_CFG:-$REPO/haproxy-conf/haproxy.cfg}" > "$W/shipped.cfg"
start shipped "$W/shipped.cfg"
if [ "$FILL" = agent ]; then
  # the shipped cfg (backend renamed above) plus the fast-path rules, as tests/integration does
  python3 -c 'import sys; sys.path.insert(0, sys.argv[1]); import test_fastpath as t; print(t.fastpath_cfg(sys.argv[2]), end="")' \
    "$REPO/tests/integration" "$W/shipped.cfg" > "$W/fastpath.cfg"
  common+=(PHANTOM_FASTPATH_MAP=$W/fastpath.map PHANTOM_FASTPATH_KEY=$W/key.map PHANTOM_STATS_SOCKET=$W/fastpath.sock)
  start fastpath "$W/fastpath.cfg"
else
  start fastpath "$HERE/haproxy-fastpath.cfg"
fi
start fponly "$HERE/haproxy-fp-only.cfg"
common+=(FP_WITH_SPOE=1)
start fpspoe "$HERE/haproxy-fp-only.cfg"
if [ "$FILL" = agent ]; then
  curl -s -o /dev/null -H 'Authorization: Bearer bench-one' http://127.0.0.1:${PORT[fastpath]}/api/x
  BENCH_NTOKENS=10000 BENCH_PREFIX=bench-many- taskset -c "$WRK_CPU" wrk -t1 -c20 -d6s \
    -s "$REPO/contrib/bench/token-many.lua" http://127.0.0.1:${PORT[fastpath]}/api/x >/dev/null
  for _ in $(seq 300); do
    n=$(echo "show map $W/fastpath.map" | socat - "UNIX-CONNECT:$W/fastpath.sock" | grep -c '^0x' || true)
    [ "$n" -ge 10001 ] && break; sleep 0.1
  done
  echo "published by the agent: $n entries"
else
python3 "$HERE/fill_map.py" --socket "$W/fastpath.sock" --map "$W/fastpath.map" --key-file "$W/key.map" \
  --token bench-one --count 10000 --ttl 3600 | grep -o 'entry_cnt=[0-9]*' | tail -1
fi
for g in fponly fpspoe; do python3 "$HERE/fill_map.py" --socket "$W/$g.sock" --map "$W/fastpath.map" --key-file "$W/key.map" \
  --token bench-one --count 10000 --ttl 3600 | grep -o 'entry_cnt=[0-9]*' | tail -1; done
# sanity: the fast path answers from the map (the backend's "ok"), and misses still go to the agent
curl -sf -H 'Authorization: Bearer bench-one' http://127.0.0.1:${PORT[fastpath]}/api/x >/dev/null || { echo "fastpath hit failed"; exit 1; }
curl -sf -H 'Authorization: Bearer other' http://127.0.0.1:${PORT[fastpath]}/api/x >/dev/null || { echo "fastpath miss failed"; exit 1; }
curl -sf -H 'Authorization: Bearer bench-many-17' http://127.0.0.1:${PORT[fastpath]}/api/x >/dev/null || { echo "fastpath hit failed"; exit 1; }
echo "IdP stub after the sanity requests (1 expected): $(curl -s http://127.0.0.1:$SP/_control/stats)"

export BENCH_NTOKENS=10000 BENCH_PREFIX=bench-many-
ticks() { awk '{print $14+$15}' /proc/$1/stat; }
run() { # name port mode gateway-pid -> req/s p99 non2xx gw-us/req agent-us/req
  local args=(-t2 -c"$CONNS" -d"$DUR" --latency)
  if [ "$3" = many ]; then args+=(-s "$REPO/contrib/bench/token-many.lua"); else args+=(-H 'Authorization: Bearer bench-one'); fi
  local g0 a0 g1 a1 b0 b1 n hz
  g0=$(ticks $4); a0=$(ticks $APID); b0=$(ticks $BPID)
  taskset -c "$WRK_CPU" wrk "${args[@]}" "http://127.0.0.1:$2/api/x" > "$W/wrk.out"
  g1=$(ticks $4); a1=$(ticks $APID); b1=$(ticks $BPID); hz=$(getconf CLK_TCK)
  n=$(awk '/requests in/{print $1}' "$W/wrk.out")
  local rps p99 non2xx
  rps=$(awk '/Requests\/sec/{print $2}' "$W/wrk.out"); p99=$(awk '$1=="99%"{print $2}' "$W/wrk.out")
  non2xx=$(awk '/Non-2xx/{print $4}' "$W/wrk.out")
  echo "$1 $rps $p99 ${non2xx:-0} $(echo "($g1-$g0)*1000000/$hz/$n" | bc -l | xargs printf %.1f) $(echo "($a1-$a0)*1000000/$hz/$n" | bc -l | xargs printf %.1f) $(echo "($b1-$b0)*1000000/$hz/$n" | bc -l | xargs printf %.1f)"
}
declare -A R C A B
echo "columns: row req/s p99 non-2xx gateway-cpu-us/req agent-cpu-us/req backend-cpu-us/req"
IFS=, read -ra rows <<< "${ROWS:-bare one,shipped one,fastpath one,fponly one,fpspoe one,bare many,fastpath many}"
for r in $(seq "$ROUNDS"); do
  for row in "${rows[@]}"; do
    set -- $row
    taskset -c "$WRK_CPU" wrk -t1 -c10 -d1s -H 'Authorization: Bearer bench-one' "http://127.0.0.1:${PORT[$1]}/api/x" >/dev/null
    out=$(run "$1-$2" ${PORT[$1]} $2 ${GPID[$1]}); echo "round $r: $out"
    R["$1-$2"]+="$(echo "$out" | awk '{print $2}') "
    C["$1-$2"]+="$(echo "$out" | awk '{print $5}') "
    A["$1-$2"]+="$(echo "$out" | awk '{print $6}') "
    B["$1-$2"]+="$(echo "$out" | awk '{print $7}') "
  done
done
echo "IdP stub: $(curl -s http://127.0.0.1:$SP/_control/stats)"
med() { tr ' ' '\n' | grep . | sort -n | awk '{a[NR]=$1} END{print a[int((NR+1)/2)]}'; }
echo "== $("$HAPROXY" -v | head -1)"
b1=$(echo ${R[bare-one]:-1} | med); bm=$(echo ${R[bare-many]:-1} | med)
for k in "${!R[@]}"; do
  m=$(echo ${R[$k]} | med); base=$b1; [[ $k == *many ]] && base=$bm
  printf '%-14s median %8s req/s  ratio %.2f  gw %5s  agent %5s  backend %5s us/req  (rounds: %s)\n' "$k" "$m" "$(echo "$m / $base" | bc -l)" "$(echo ${C[$k]} | med)" "$(echo ${A[$k]} | med)" "$(echo ${B[$k]} | med)" "${R[$k]}"
done
