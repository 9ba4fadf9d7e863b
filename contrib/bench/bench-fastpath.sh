#!/usr/bin/env bash
# The fast-path benchmark: HAProxy with no rules (the headline ceiling), the bare proxy writing a
# constant 849-byte JWT (what every phantom-token gateway pays on a hit), the shipped cfg through
# the agent (SPOE round trip per request), and the shipped cfg plus the fast-path rules with the
# agent publishing its decisions (one cached token, then 10 000 distinct cached tokens).
# Prints req/s (noisy on a shared box) and CPU microseconds per request of the gateway, the agent
# and the API stub from /proc (the steadier figure). Pinned: everything but wrk on SUT_CPU.
# Usage: contrib/bench/bench-fastpath.sh [HAPROXY_BINARY]   (env: ROUNDS=5 DUR=5s CONNS=50
#        SUT_CPU=1 WRK_CPU=0 AGENT=build/phantom-token-agent SHIPPED_CFG=... SPOE_CONF=...)
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
export FILL=agent ROUNDS=${ROUNDS:-5} DUR=${DUR:-5s}
export ROWS=${ROWS:-"bare one,barejwt one,shipped one,fastpath one,bare many,fastpath many"}
exec "$HERE/../fastpath-proto/bench-proto.sh" "${1:-${PTA_HAPROXY:-/usr/sbin/haproxy}}"
