#!/usr/bin/env bash
# Runs every test: installs what is missing, builds with -Werror, runs the unit and integration
# tests (ctest), then rebuilds under AddressSanitizer + UndefinedBehaviorSanitizer and runs them
# all again. Exit status 0 only when everything passed.
# Usage: tests/run-all.sh [--no-sanitizers]
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
jobs=$(nproc)

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

run_suite "release" "$root/build"
if [ "${1:-}" != "--no-sanitizers" ]; then
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
echo "all test suites passed"
