#!/usr/bin/env bash
# One-command demo of phantom-token-agent on a fresh Debian 12 machine.
#
#   contrib/demo/run-demo.sh          build, start everything, print curl commands, wait for Ctrl-C
#   contrib/demo/run-demo.sh --check  same, but run the curl commands, check their statuses, stop;
#                                     exits non-zero when a status is wrong (for CI and tests)
#
# It installs the missing Debian packages (apt-get; needs root or sudo, skipped when all are
# present), builds the agent with cmake into build-demo/ (its own tree: build/ stays what
# tests/run-all.sh configured), then starts on loopback:
#   the demo identity server  tests/servers/idp.py --demo    (knows two demo opaque tokens)
#   the demo API              tests/servers/echo_backend.py  (answers with what it received)
#   phantom-token-agent
#   HAProxy                   with the shipped haproxy-conf/haproxy.cfg and spoe/phantom-token.conf
#
# Environment (all optional):
#   DEMO_PORT=8080 DEMO_BACKEND_PORT=8081 DEMO_AGENT_PORT=12345 DEMO_IDP_PORT=8090  ports
#   PHANTOM_AGENT_BIN=/path/to/phantom-token-agent   use this binary, skip the build
#   HAPROXY_BIN=/usr/sbin/haproxy  PYTHON=/usr/bin/python3  BUILD_DIR=<repo>/build-demo
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
DEMO_PORT="${DEMO_PORT:-8080}"
DEMO_BACKEND_PORT="${DEMO_BACKEND_PORT:-8081}"
DEMO_AGENT_PORT="${DEMO_AGENT_PORT:-12345}"
DEMO_IDP_PORT="${DEMO_IDP_PORT:-8090}"
BUILD_DIR="${BUILD_DIR:-$REPO/build-demo}"
HAPROXY_BIN="${HAPROXY_BIN:-/usr/sbin/haproxy}"
PYTHON="${PYTHON:-/usr/bin/python3}"
CLIENT_ID="phantom-agent"
# The demo IdP's fixed tokens (tests/servers/idp.py, DEMO_TOKENS).
USER_TOKEN="demo-7e1f2a9c4b8d43f0a6c5e2d1b0f9a8c7"
ADMIN_TOKEN="demo-admin-3c9b5d7e1f2a4b6c8d0e1f2a3b4c5d6e"

CHECK=0
case "${1:-}" in
    --check) CHECK=1 ;;
    "") ;;
    -h|--help) sed -n '2,19p' "$0"; exit 0 ;;
    *) echo "usage: $0 [--check]" >&2; exit 2 ;;
esac

log() { printf '==> %s\n' "$*" >&2; }
KEEP_WORKDIR=0
die() { printf 'error: %s\n' "$*" >&2; KEEP_WORKDIR=1; exit 1; }

# --- packages ----------------------------------------------------------------------------------
# The package list lives in contrib/install-deps.sh ("demo": what building and running need), so
# that the demo, the tests and CI never disagree about it.
install_packages() {
    if [ -n "${PHANTOM_AGENT_BIN:-}" ] && [ -x "$HAPROXY_BIN" ] && command -v curl >/dev/null \
        && [ -x "$PYTHON" ]; then
        return 0  # nothing to build and every runtime tool is there
    fi
    "$REPO/contrib/install-deps.sh" demo || die "could not install the demo's Debian packages"
}

# --- build -------------------------------------------------------------------------------------
build_agent() {
    if [ -n "${PHANTOM_AGENT_BIN:-}" ]; then
        AGENT="$PHANTOM_AGENT_BIN"
        [ -x "$AGENT" ] || die "PHANTOM_AGENT_BIN=$AGENT is not executable"
        return
    fi
    log "building into $BUILD_DIR"
    cmake -S "$REPO" -B "$BUILD_DIR" -DPTA_TESTS=OFF -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
    cmake --build "$BUILD_DIR" -j"$(nproc)" >/dev/null
    AGENT="$BUILD_DIR/phantom-token-agent"
}

# --- processes ---------------------------------------------------------------------------------
PIDS=()
WORKDIR=""

cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in "${PIDS[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    PIDS=()
    # --check cleans up after itself unless something failed; the interactive demo keeps its logs.
    if [ -n "$WORKDIR" ] && [ "$CHECK" = 1 ] && [ "$KEEP_WORKDIR" = 0 ]; then
        rm -rf "$WORKDIR"
    fi
}
trap cleanup EXIT
trap 'echo; log "stopping"; exit 0' INT TERM

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# Waits until a port accepts connections, failing early when the process died.
wait_port() {
    local name="$1" port="$2" pid="$3" i
    for i in $(seq 1 150); do
        port_open "$port" && return 0
        kill -0 "$pid" 2>/dev/null || { cat "$WORKDIR/$name.log" >&2; die "$name exited"; }
        sleep 0.1
    done
    die "$name did not listen on port $port (log: $WORKDIR/$name.log)"
}

start() {  # start NAME PORT COMMAND...
    local name="$1" port="$2"
    shift 2
    port_open "$port" && die "port $port is already in use (set the DEMO_*_PORT variables)"
    "$@" >"$WORKDIR/$name.log" 2>&1 &
    PIDS+=("$!")
    wait_port "$name" "$port" "$!"
    log "$name listening on 127.0.0.1:$port"
}

# Waits until HAProxy's SPOP health check reached the agent: a request then gets a real answer.
wait_agent_checked() {
    local i code
    for i in $(seq 1 100); do
        code="$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$DEMO_PORT/api/data" || true)"
        [ "$code" = 401 ] && return 0
        sleep 0.1
    done
    die "HAProxy never got an answer from the agent (logs: $WORKDIR)"
}

start_all() {
    WORKDIR="$(mktemp -d /tmp/phantom-demo.XXXXXX)"
    (umask 077 && head -c 24 /dev/urandom | base64 | tr -d '/+=' >"$WORKDIR/client-secret")

    start idp "$DEMO_IDP_PORT" "$PYTHON" "$REPO/tests/servers/idp.py" --demo \
        --port "$DEMO_IDP_PORT" --client-id "$CLIENT_ID" --secret-file "$WORKDIR/client-secret"
    start api "$DEMO_BACKEND_PORT" "$PYTHON" "$REPO/tests/servers/echo_backend.py" \
        --port "$DEMO_BACKEND_PORT"
    start agent "$DEMO_AGENT_PORT" "$AGENT" --listen "127.0.0.1:$DEMO_AGENT_PORT" \
        --introspection-url "http://127.0.0.1:$DEMO_IDP_PORT/introspect" \
        --client-id "$CLIENT_ID" --client-secret-file "$WORKDIR/client-secret" --access-log
    PHANTOM_BIND="127.0.0.1:$DEMO_PORT" PHANTOM_BACKEND="127.0.0.1:$DEMO_BACKEND_PORT" \
    PHANTOM_AGENT="127.0.0.1:$DEMO_AGENT_PORT" PHANTOM_SPOE_CONF="$REPO/spoe/phantom-token.conf" \
        start haproxy "$DEMO_PORT" "$HAPROXY_BIN" -db -f "$REPO/haproxy-conf/haproxy.cfg"
    wait_agent_checked
}

# --- the demo requests -------------------------------------------------------------------------
URL="http://127.0.0.1:$DEMO_PORT"
# name | expected status | curl arguments
DEMO_REQUESTS=(
    "good token|200|-H 'Authorization: Bearer $USER_TOKEN' $URL/api/data"
    "scoped route, token without the admin scope|403|-H 'Authorization: Bearer $USER_TOKEN' $URL/api/admin/users"
    "scoped route, admin token|200|-H 'Authorization: Bearer $ADMIN_TOKEN' $URL/api/admin/users"
    "no token|401|$URL/api/data"
    "bad token|401|-H 'Authorization: Bearer not-a-real-token' $URL/api/data"
)

print_curls() {
    local entry name want args
    echo
    echo "Demo running. HAProxy: $URL  (logs in $WORKDIR)"
    echo "Paste these:"
    for entry in "${DEMO_REQUESTS[@]}"; do
        IFS='|' read -r name want args <<<"$entry"
        printf '\n  # %s (expect %s)\n  curl -i %s\n' "$name" "$want" "$args"
    done
    echo
}

show_first() {
    echo "What the API received for the good token (the opaque token became a JWT):"
    curl -s -H "Authorization: Bearer $USER_TOKEN" "$URL/api/data" | "$PYTHON" -c '
import base64, json, sys
seen = json.load(sys.stdin)
print("  %s %s" % (seen["method"], seen["path"]))
for name, value in seen["headers"]:
    print("  %s: %s" % (name, value))
    if name.lower() == "authorization" and value.startswith("Bearer "):
        payload = value[7:].split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        print("    (JWT claims: %s)" % json.dumps(claims))
'
}

run_checks() {
    local entry name want args got failures=0
    for entry in "${DEMO_REQUESTS[@]}"; do
        IFS='|' read -r name want args <<<"$entry"
        got="$(eval "curl -s -o /dev/null -w '%{http_code}' $args")"
        if [ "$got" = "$want" ]; then
            printf 'ok    %-45s %s\n' "$name" "$got"
        else
            printf 'FAIL  %-45s got %s, expected %s\n' "$name" "$got" "$want"
            failures=$((failures + 1))
        fi
    done
    return "$failures"
}

main() {
    install_packages
    build_agent
    start_all
    print_curls
    show_first
    if [ "$CHECK" = 1 ]; then
        echo
        if run_checks; then
            log "all demo requests answered as expected"
            exit 0
        fi
        die "some demo requests got the wrong status (logs: $WORKDIR kept)"
    fi
    log "press Ctrl-C to stop"
    wait
}

main
