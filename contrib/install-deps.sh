#!/usr/bin/env bash
# Installs the Debian 12 packages that building, testing, the demo and packaging need, and only
# those that are missing. Used by tests/run-all.sh, contrib/demo/run-demo.sh and CI.
# Usage: contrib/install-deps.sh [build|test|demo|rpm|bench|fuzz|haproxy-builds|all]  (default: test)
# haproxy-builds: the runtime libraries of upstream HAProxy 3.x builds (../shared/haproxy/README.md).
set -euo pipefail

build=(build-essential cmake pkg-config libev-dev libcurl4-openssl-dev libjansson-dev libssl-dev
       libmicrohttpd-dev)
test=("${build[@]}" libcmocka-dev haproxy python3 curl openssl)
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

missing=()
for p in "${want[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

sudo=()
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "missing packages: ${missing[*]} (run as root or install sudo)" >&2; exit 1; }
  sudo=(sudo)
fi
echo "installing: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -q
"${sudo[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}"
