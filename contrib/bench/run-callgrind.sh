#!/usr/bin/env bash
# Instructions per decision on the cache-hit path, counted by callgrind (deterministic, so it does
# not care how noisy the machine is). bench_decision runs twice in "hit" mode, with N1 and N2
# iterations; (Ir(N2) - Ir(N1)) / (N2 - N1) cancels the setup (cache, JWT parsing, OpenSSL init).
# Also prints the functions that cost the most per decision (inclusive and self), from the N2 run.
#
# Usage: contrib/bench/run-callgrind.sh     (builds bench_decision in build-bench/ if needed)
# Environment: BENCH_BUILD_DIR (default <repo>/build-bench), CALLGRIND_N1=2000, CALLGRIND_N2=12000,
#              CALLGRIND_TOP=25 (functions listed)
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
BUILD=${BENCH_BUILD_DIR:-$REPO/build-bench}
N1=${CALLGRIND_N1:-2000}
N2=${CALLGRIND_N2:-12000}
TOP=${CALLGRIND_TOP:-25}

command -v valgrind >/dev/null || "$REPO/contrib/install-deps.sh" bench
BIN=$BUILD/tests/bench_decision
if [ ! -x "$BIN" ]; then
  cmake -S "$REPO" -B "$BUILD" >/dev/null
  cmake --build "$BUILD" -j2 --target bench_decision >/dev/null
fi
[ -x "$BIN" ] || { echo "run-callgrind: no $BIN" >&2; exit 1; }

WORK=$(mktemp -d "${TMPDIR:-/tmp}/pta-callgrind.XXXXXX")
trap 'rm -rf "$WORK"' EXIT

total_ir() { # callgrind output file -> total Ir
  awk '/^(summary|totals):/ {print $2; exit}' "$1"
}

for n in "$N1" "$N2"; do
  valgrind --tool=callgrind --callgrind-out-file="$WORK/cg.$n" "$BIN" "$n" hit \
    >"$WORK/out.$n" 2>"$WORK/err.$n" || { cat "$WORK/err.$n" >&2; exit 1; }
done
ir1=$(total_ir "$WORK/cg.$N1")
ir2=$(total_ir "$WORK/cg.$N2")
per=$(( (ir2 - ir1) / (N2 - N1) ))
echo "callgrind: Ir(N=$N1) = $ir1, Ir(N=$N2) = $ir2"
echo "instructions/decision: $per   (cache hit, no I/O; (Ir(N2) - Ir(N1)) / (N2 - N1))"

# Per-function cost per decision: the difference of the two profiles, function by function.
annotate() { # file, inclusive(yes|no) -> "Ir<TAB>function [object]" lines
  callgrind_annotate --inclusive="$2" --auto=no --tree=none --threshold=100 "$1" 2>/dev/null |
    awk '/^ *[0-9,]+ +\( *[0-9.]+%\) +[^ ]/ {
           line = $0; v = $1; gsub(",", "", v)
           sub(/^ *[0-9,]+ +\( *[0-9.]+%\) +/, "", line); print v "\t" line }'
}
for kind in yes no; do
  annotate "$WORK/cg.$N1" "$kind" >"$WORK/a1.$kind"
  annotate "$WORK/cg.$N2" "$kind" >"$WORK/a2.$kind"
  if [ "$kind" = yes ]; then
    echo; echo "top functions per decision, inclusive (Ir per decision, % of the decision):"
  else
    echo; echo "top functions per decision, self (Ir per decision, % of the decision):"
  fi
  awk -F'\t' -v d=$((N2 - N1)) -v per="$per" -v top="$TOP" '
    NR == FNR { a[$2] = $1; next }
    $2 !~ / \[/ || $2 ~ /PROGRAM TOTALS|below main|libc_start|bench_decision\.c:|ld-linux/ { next }
    { x = ($1 - a[$2]) / d; if (x >= 1) printf "%10.0f  %5.1f%%  %s\n", x, 100 * x / per, $2 }
  ' "$WORK/a1.$kind" "$WORK/a2.$kind" | sort -k1,1nr | head -n "$TOP" || true
done


# Heap allocations per decision: the calls to malloc/calloc/realloc/free, by caller, difference of
# the two runs divided by N2 - N1 (callgrind counts calls exactly).
callers() { # file, function -> "calls<TAB>caller" lines
  callgrind_annotate --inclusive=yes --auto=no --tree=caller --threshold=100 "$1" 2>/dev/null |
    awk -v f="$2" 'BEGIN { RS = ""; FS = "\n" }
      { for (i = 1; i <= NF; i++) if ($i ~ ("\\*  .*:" f " \\[")) {
          for (j = 1; j < i; j++) if (match($j, /< .* \([0-9,]+x\)/)) {
            s = substr($j, RSTART + 2, RLENGTH - 2); n = s
            sub(/ \([0-9,]+x\)$/, "", s); sub(/^.* \(/, "", n); sub(/x\)$/, "", n); gsub(",", "", n)
            print n "\t" s } } }'
}
echo
echo "heap calls per decision (by caller):"
for f in malloc calloc realloc free; do
  callers "$WORK/cg.$N1" "$f" >"$WORK/c1.$f"
  callers "$WORK/cg.$N2" "$f" >"$WORK/c2.$f"
  awk -F'\t' -v d=$((N2 - N1)) -v f="$f" '
    NR == FNR { a[$2] += $1; next }
    { b[$2] += $1 }
    END { t = 0; for (k in b) { x = (b[k] - a[k]) / d; if (x >= 0.5) { t += x; line[k] = x } }
          printf "  %-8s %5.2f per decision\n", f, t
          for (k in line) printf "           %5.2f  from %s\n", line[k], k }
  ' "$WORK/c1.$f" "$WORK/c2.$f"
done
