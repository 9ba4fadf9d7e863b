#!/bin/sh
# Builds the libFuzzer targets with clang (-fsanitize=fuzzer,address,undefined) and runs fuzz_spop.
#   tests/fuzz/run-fuzz.sh [SECONDS] [extra libFuzzer args, e.g. -runs=1000000 -jobs=2]
# Env: BUILD_DIR (default /tmp/pta-fuzz). The seeds in tests/fuzz/corpus are read, never written:
# new inputs go to $BUILD_DIR/corpus, crashes to $BUILD_DIR/crash-*.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
src=$(cd "$here/../.." && pwd)
build=${BUILD_DIR:-/tmp/pta-fuzz}
secs=${1:-60}
[ $# -gt 0 ] && shift

CC=clang cmake -S "$src" -B "$build" -DPTA_FUZZ=ON -DPTA_TESTS=OFF -DPTA_WERROR=ON \
    -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$build" --target fuzz_spop
mkdir -p "$build/corpus"
cd "$build"
exec ./tests/fuzz/fuzz_spop -max_total_time="$secs" -dict="$here/spop.dict" \
    -artifact_prefix="$build/" -print_final_stats=1 "$@" "$build/corpus" "$here/corpus"
