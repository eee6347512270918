"""The latest search layout per prefix length: what a hash costs, and how fast it runs.

Usage: python benchmarks/layouts.py [--measure] [--engine sha-ni] [--seconds S]

For each prefix length mod 64: the digit count a job starts with, how many nonces it has at
one compression per hash, the SHA-256 rounds per hash of each compiled engine at position
10**9 (where a job of difficulty 7-8 spends its hashes), and with --measure the engine's rate
there against the baseline kernel (benchmarks/baseline.py) at nonce 10**9, best of 2
interleaved runs.
"""

from __future__ import annotations

import argparse
from types import ModuleType

import baseline

from pow_mcp.pow.bench import NEVER, POSITION, rounds_per_hash, search_rate
from pow_mcp.pow.kernels import native
from pow_mcp.pow.kernels.native import CompiledKernel
from pow_mcp.pow.layout import LAYOUT_LATEST, nonce_at, segments


def one_block_nonces(tail: int) -> int:
    return sum(
        count
        for first, count in segments(LAYOUT_LATEST, b"x" * tail)
        if tail + len(str(first)) + 9 <= 64
    )


def measure(old: ModuleType, engine: str, prefix: bytes, seconds: float) -> tuple[float, float]:
    """Best of 2 interleaved rates at position 10**9: the baseline's and today's."""
    kernel = CompiledKernel(engine)
    before = now = 0.0
    for _ in range(2):
        before = max(
            before,
            search_rate(lambda p, n: old.search(engine, prefix, p, n, NEVER), seconds, POSITION),
        )
        now = max(
            now,
            search_rate(
                lambda p, n: kernel.search(prefix, p, n, NEVER, LAYOUT_LATEST), seconds, POSITION
            ),
        )
    return before, now


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--measure", action="store_true", help="time one engine per length")
    parser.add_argument("--engine", default="sha-ni")
    parser.add_argument("--seconds", type=float, default=0.2)
    args = parser.parse_args()
    ext = native._ext
    engines = list(ext.engines()) if ext else []
    old = baseline.load() if args.measure else None
    header = f"{'bytes':>5} {'first':>5} {'one-block':>10} {'at 10**9':>8}  " + "".join(
        f"{e:>10}" for e in engines
    )
    if old:
        header += f"  {args.engine} M/s before/now"
    print(header)
    for tail in range(64):
        prefix = b"x" * tail
        first = len(str(segments(LAYOUT_LATEST, prefix)[0][0]))
        digits = len(str(nonce_at(LAYOUT_LATEST, prefix, POSITION)))
        fast = one_block_nonces(tail)
        line = f"{tail:>5} {first:>5} {f'{fast:.0e}' if fast < 10**15 else 'all':>10} {digits:>8}  "
        line += "".join(f"{rounds_per_hash(e, prefix, POSITION) or 0:>10.1f}" for e in engines)
        if old:
            before, now = measure(old, args.engine, prefix, args.seconds)
            line += f"  {before / 1e6:6.1f} {now / 1e6:6.1f} {now / before:5.2f}x"
        print(line, flush=True)


if __name__ == "__main__":
    main()
