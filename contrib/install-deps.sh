#!/usr/bin/env bash
# Installs the Debian 12 packages that building, testing, the demo and packaging need, and only
# those that are missing. Used by tests/run-all.sh, contrib/demo/run-demo.sh and CI.
# Usage: contrib/install-deps.sh [build|test|demo|rpm|bench|fuzz|haproxy-builds|all]  (default: test)
# haproxy-builds: the runtime libraries of upstream HAProxy 3.x builds (../shared/haproxy/README.md).
set -euo pipefail

build=(build-essential cmake pkg-config libev-dev libcurl4-openssl-dev libjansson-dev libssl-dev
       libmicrohttpd-dev libhiredis-dev libmsgpack-dev)
test=("${build[@]}" libcmocka-dev haproxy python3 curl openssl redis-server nodejs)
demo=("${build[@]}" haproxy python3 curl)
rpm=("${build[@]}" rpm systemd)
bench=("${test[@]}" wrk valgrind nginx-light)
fuzz=("${build[@]}" clang libclang-rt-14-dev)
haproxy_builds=(libssl3 libpcre2-8-0 liblua5.4-0 libcrypt1)

case "${1:-test}" in
  build) want=("${build[@]}") ;;
  test) want=("${test[@]}") ;;
  demo) want=("${demo[@]}") ;;
  rpm) want=("${rpm[@]}") ;;
  bench) want=("${bench[@]}") ;;
  fuzz) want=("${fuzz[@]}") ;;
  haproxy-builds) want=("${haproxy_builds[@]}") ;;
  all) want=("${test[@]}" rpm systemd wrk valgrind clang libclang-rt-14-dev) ;;
  *) echo "usage: $0 [build|test|demo|rpm|bench|fuzz|haproxy-builds|all]" >&2; exit 2 ;;
esac

# Debian ships npm as its own package; other builds of nodejs (NodeSource) bundle it and conflict
# with Debian's npm, so ask for it only when no npm command exists.
needs_npm=0
for p in "${want[@]}"; do [ "$p" = nodejs ] && needs_npm=1; done
[ $needs_npm -eq 1 ] && ! command -v npm >/dev/null && want+=(npm)

missing=()
for p in "${want[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

# The test identity server's npm packages (oidc-provider, jose), pinned by package-lock.json;
# re-installed only when the lock file changed. Only the npm registry is contacted.
npm_packages() {
  [ $needs_npm -eq 1 ] || return 0
  local dir; dir="$(cd "$(dirname "$0")/.." && pwd)/tests/servers/oidc"
  [ -f "$dir/node_modules/.package-lock.json" ] && [ "$dir/node_modules/.package-lock.json" -nt "$dir/package-lock.json" ] && return 0
  npm ci --prefix "$dir" --no-audit --no-fund --loglevel=error
}

if [ ${#missing[@]} -eq 0 ]; then
  npm_packages
  exit 0
fi

sudo=()
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "missing packages: ${missing[*]} (run as root or install sudo)" >&2; exit 1; }
  sudo=(sudo)
fi
echo "installing: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -q
"${sudo[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}"
npm_packages
