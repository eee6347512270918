"""Hash rates per prefix class against the kernel from before the search layouts, measured in
the same run; then every kernel, the pool and its latencies (as `pow-mcp bench`).

Usage: python benchmarks/hashrate.py [--seconds S] [--rounds N] [--workers N]
                                     [--engines sha-ni,avx2] [--no-pool]

For each prefix class and compiled engine: SHA-256 rounds per hash and hashes/s on one core,
of today's kernel in the latest layout and of the baseline (benchmarks/baseline.py: the kernel
of commit 4b62c38, in its plain order), both from position 10**9, where a job of difficulty
7-8 spends most of its hashes (past the few fast nonces of the 45-48 byte band and the 999
one-block nonces of 52 bytes), with the ratio now / before.
Measurements are interleaved and each figure is the best of N rounds, so that a noisy minute
on a shared machine hurts both sides alike.
"""

from __future__ import annotations

import argparse
import os
import subprocess
from collections.abc import Callable
from functools import partial

import baseline

from pow_mcp.pow.bench import (
    NEVER,
    POSITION,
    PREFIX_CLASSES,
    cpu_model,
    kernel_path,
    rounds_per_hash,
    run,
    search_rate,
)
from pow_mcp.pow.kernels import native
from pow_mcp.pow.kernels.native import CompiledKernel
from pow_mcp.pow.layout import LAYOUT_LATEST
from pow_mcp.pow.pool import default_workers


def compare(engines: list[str], seconds: float, rounds: int) -> None:
    try:
        old = baseline.load()
    except (OSError, subprocess.CalledProcessError) as exc:
        print(f"no baseline ({exc}); rates of today's kernel only follow")
        return
    probes: dict[tuple[str, str, str], Callable[[], float]] = {}
    for label, prefix in PREFIX_CLASSES.items():
        for engine in engines:
            kernel = CompiledKernel(engine)
            probes[(label, engine, "now")] = partial(
                search_rate,
                lambda p, n, k=kernel, x=prefix: k.search(x, p, n, NEVER, LAYOUT_LATEST),
                seconds,
                POSITION,
            )
            probes[(label, engine, "before")] = partial(
                search_rate,
                lambda p, n, e=engine, x=prefix: old.search(e, x, p, n, NEVER),
                seconds,
                POSITION,
            )
    best = dict.fromkeys(probes, 0.0)
    for _ in range(rounds):
        for key, probe in probes.items():
            best[key] = max(best[key], probe())
    digits_before = len(str(POSITION))
    print(
        f"{'prefix class':<26}{'engine':<10}{'rounds/hash before -> now':<30}"
        f"{'M/s before':>11}{'M/s now':>9}{'now/before':>12}"
    )
    for label, prefix in PREFIX_CLASSES.items():
        for engine in engines:
            r0 = baseline.rounds_per_hash(engine, len(prefix), digits_before)
            r1 = rounds_per_hash(engine, prefix, POSITION) or 0.0
            before, now = best[(label, engine, "before")], best[(label, engine, "now")]
            print(
                f"{label:<26}{engine:<10}{f'{r0:6.1f} -> {r1:5.1f} ({r1 / r0:.2f}x)':<30}"
                f"{before / 1e6:>11.1f}{now / 1e6:>9.1f}{now / before:>11.2f}x"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=0.5, help="per measurement")
    parser.add_argument("--rounds", type=int, default=3, help="figures are the best of these")
    parser.add_argument(
        "--workers", type=int, default=int(os.environ.get("POW_WORKERS", 0)) or None
    )
    parser.add_argument("--engines", help="compiled engines to compare (default: all)")
    parser.add_argument("--no-pool", action="store_true", help="only the per-class comparison")
    args = parser.parse_args()
    print(f"CPU: {cpu_model()} ({default_workers()} logical CPUs)")
    print(f"kernel: {kernel_path()}")
    if native._ext is not None:
        engines = args.engines.split(",") if args.engines else list(native._ext.engines())
        print(f"per core, best of {args.rounds} interleaved rounds of {args.seconds} s:")
        compare(engines, args.seconds, args.rounds)
    if not args.no_pool:
        print()
        run(max(args.seconds, 1.0), args.workers, rounds=args.rounds)


if __name__ == "__main__":
    main()
