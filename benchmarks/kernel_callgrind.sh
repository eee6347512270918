#!/usr/bin/env bash
# Instructions per hash of the avx2 and scalar-c engines, counted by callgrind, per prefix
# class: the baseline kernel (benchmarks/baseline.py, plain order) against today's (latest
# layout), both from position 10**9 as in hashrate.py. Unlike wall-clock rates, these figures
# do not move with the load of a shared machine.
#
# Usage: benchmarks/kernel_callgrind.sh [ENGINE...]   (default: avx2 scalar-c)
#
# Valgrind does not emulate the SHA extensions and hides them from cpuid, so sha-ni is not
# counted here; hashrate.py gives its rounds per hash and its rate.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
command -v valgrind >/dev/null || { echo "valgrind is not installed" >&2; exit 1; }
export PYTHONHASHSEED=0 # the same start-up work in every run
engines=${*:-avx2 scalar-c}
"$PY" benchmarks/baseline.py >/dev/null # built outside valgrind

# which engine class count -> total instructions of a run hashing `count` positions
instructions() {
    local out
    out=$(mktemp)
    valgrind --tool=callgrind --callgrind-out-file="$out" "$PY" -c "
import sys
sys.path.insert(0, 'benchmarks')
import baseline
from pow_mcp.pow.bench import PREFIX_CLASSES
from pow_mcp.pow.kernels.native import CompiledKernel
from pow_mcp.pow.layout import LAYOUT_LATEST
which, engine, label, count = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
prefix = PREFIX_CLASSES[label]
if which == 'before':
    baseline.load().search(engine, prefix, 10**9, count, 64)
else:
    CompiledKernel(engine).search(prefix, 10**9, count, 64, LAYOUT_LATEST)
" "$@" >/dev/null 2>&1
    awk '/^summary:/ {print $2}' "$out"
    rm -f "$out"
}

labels=$("$PY" -c "from pow_mcp.pow.bench import PREFIX_CLASSES; print('\n'.join(PREFIX_CLASSES))")
printf '%-26s %-9s %10s %10s %8s\n' "prefix class" engine before now ratio
while IFS= read -r label; do
    for engine in $engines; do
        per_hash=()
        for which in before now; do
            small=$(instructions "$which" "$engine" "$label" 1000)
            large=$(instructions "$which" "$engine" "$label" 41000)
            per_hash+=($(((large - small) / 40000)))
        done
        printf '%-26s %-9s %10d %10d %7.2fx\n' "$label" "$engine" "${per_hash[0]}" \
            "${per_hash[1]}" "$(echo "${per_hash[1]} / ${per_hash[0]}" | bc -l)"
    done
done <<<"$labels"
