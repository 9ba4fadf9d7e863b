#!/usr/bin/env bash
# Runs every test: installs what is missing, builds with -Werror, runs the unit and integration
# tests (ctest), then rebuilds under AddressSanitizer + UndefinedBehaviorSanitizer and runs them
# all again. Exit status 0 only when everything passed.
# Usage: tests/run-all.sh [--no-sanitizers] [--haproxy PATH]...
# The first pass drives the HAProxy CMake finds (/usr/sbin/haproxy, Debian's 2.6). Every other
# HAProxy given with --haproxy or in PTA_HAPROXY_EXTRA (space-separated paths) gets one more run of
# the integration tests that start HAProxy, with the same release build of the agent; a path that
# is absent or cannot run here is skipped with a line saying so.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
jobs=$(nproc)

sanitizers=1
extra=(${PTA_HAPROXY_EXTRA:-})
while [ $# -gt 0 ]; do
  case "$1" in
    --no-sanitizers) sanitizers=0 ;;
    --haproxy) [ $# -ge 2 ] || { echo "--haproxy needs a path" >&2; exit 2; }; extra+=("$2"); shift ;;
    *) echo "usage: $0 [--no-sanitizers] [--haproxy PATH]..." >&2; exit 2 ;;
  esac
  shift
done

"$root/contrib/install-deps.sh" test

run_suite() { # name, build dir, extra cmake args...
  local name=$1 dir=$2
  shift 2
  echo "=== $name: build ($dir)"
  cmake -S "$root" -B "$dir" -DPTA_WERROR=ON "$@" >/dev/null
  cmake --build "$dir" -j "$jobs"
  echo "=== $name: tests"
  (cd "$dir" && ctest --output-on-failure --timeout 600 -j 1)
}

# The integration tests that start HAProxy (the others do not depend on its version), run once
# against another HAProxy binary. Each test prints the HAProxy version it drove.
run_integration_on() { # haproxy binary
  local h=$1 v t failed=0
  if [ ! -x "$h" ]; then
    echo "=== integration on $h: skipped (not found)"
    return 0
  fi
  # The whole output, then its first line ("| head -n 1" can SIGPIPE HAProxy under pipefail).
  v=$("$h" -v 2>&1) || true
  v=${v%%$'\n'*}
  if [[ "$v" != "HAProxy version "* ]]; then
    echo "=== integration on $h: skipped (cannot run here: $v)"
    return 0
  fi
  v=$(awk '{print $3}' <<<"$v")
  echo "=== integration on HAProxy $v ($h)"
  for t in "$root"/tests/integration/test_*.py; do
    grep -q "harness\.Stack\|StackTestCase\|harness\.HAPROXY" "$t" || continue
    [ "$(basename "$t")" != test_haproxy_versions.py ] || continue # already covers every binary
    if PTA_AGENT="$root/build/phantom-token-agent" PTA_HAPROXY="$h" PTA_SOURCE_DIR="$root" \
        timeout 600 python3 "$t" >"$root/build/it-$(basename "$t" .py).log" 2>&1; then
      echo "    $(basename "$t"): passed"
    else
      echo "    $(basename "$t"): FAILED on HAProxy $v"
      tail -n 60 "$root/build/it-$(basename "$t" .py).log"
      failed=1
    fi
  done
  return $failed
}

# Absolute paths: ctest runs the tests from the build directory.
for i in "${!extra[@]}"; do
  [ -e "${extra[$i]}" ] && extra[$i]=$(realpath "${extra[$i]}")
done
# test_haproxy_versions.py (in the first pass) checks that the shipped files load on each of them.
export PTA_HAPROXY_EXTRA="${extra[*]}"
run_suite "release" "$root/build"
extra_failed=0
[ ${#extra[@]} -gt 0 ] || echo "=== integration on other HAProxy versions: none given (--haproxy, PTA_HAPROXY_EXTRA)"
for h in "${extra[@]}"; do
  run_integration_on "$h" || extra_failed=1
done
if [ $sanitizers -eq 1 ]; then
  # detect_leaks: every buffer has an owner; abort_on_error: a finding fails the test that hit it.
  export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:strict_string_checks=1
  export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
  run_suite "sanitizers" "$root/build-asan" -DPTA_SANITIZE=ON -DCMAKE_BUILD_TYPE=Debug
fi
# A short fuzzing pass of the SPOP decoder, from the checked-in seeds, when clang's libFuzzer is
# installed (contrib/install-deps.sh fuzz; CI installs it): a regression there fails the run.
if command -v clang >/dev/null && ls /usr/lib/llvm-*/lib/clang/*/lib/linux/libclang_rt.fuzzer-x86_64.a \
    >/dev/null 2>&1; then
  echo "=== fuzz: 200000 runs of fuzz_spop"
  BUILD_DIR="$root/build-fuzz" "$root/tests/fuzz/run-fuzz.sh" 120 -runs=200000 2>&1 | tail -n 3
else
  echo "=== fuzz: skipped (clang/libFuzzer not installed: contrib/install-deps.sh fuzz)"
fi
if [ $extra_failed -ne 0 ]; then
  echo "integration tests FAILED on at least one of: ${extra[*]}"
  exit 1
fi
echo "all test suites passed"
