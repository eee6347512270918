#!/usr/bin/env bash
# Instructions per hash of each compiled kernel, counted by callgrind: a figure that does not
# move with the load of a shared machine, for comparing two versions of pow/_sha256.c.
#
# Usage: benchmarks/kernel_callgrind.sh [PREFIX]   (after `python setup.py build_ext --inplace`)
#
# Valgrind does not emulate the SHA extensions and hides them from cpuid, so the sha-ni
# kernel is not listed here; compare sha-ni versions by timing (several alternating runs).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
PREFIX=${1:-5-42BUILD1000NONCE}
command -v valgrind >/dev/null || { echo "valgrind is not installed" >&2; exit 1; }
export PYTHONHASHSEED=0 # the same start-up work in every run

instructions() { # engine count -> total instructions of a run hashing `count` nonces
    local out
    out=$(mktemp)
    valgrind --tool=callgrind --callgrind-out-file="$out" "$PY" -c "
import sys
from pow import _sha256
_sha256.search(sys.argv[1], sys.argv[2].encode(), 10**9, int(sys.argv[3]), 64)
" "$1" "$PREFIX" "$2" 2>/dev/null >/dev/null
    awk '/^summary:/ {print $2}' "$out"
    rm -f "$out"
}

engines=$("$PY" -c "from pow import _sha256; print(' '.join(_sha256.engines()))")
# Valgrind's CPU has no SHA extensions, so ask under valgrind which engines it can run.
engines=$(valgrind -q "$PY" -c "from pow import _sha256; print(' '.join(_sha256.engines()))" 2>/dev/null || echo "$engines")
for engine in $engines; do
    small=$(instructions "$engine" 1000)
    large=$(instructions "$engine" 41000)
    echo "$engine: $(( (large - small) / 40000 )) instructions per hash (prefix '$PREFIX')"
done
