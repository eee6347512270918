"""Hash rates per prefix class: every engine against today's sha-ni, and against the kernel from
before the search layouts, measured in the same run; then every kernel, the pool and its
latencies (as `pow-mcp bench`), and with --server one job through the MCP server.

Usage: python benchmarks/hashrate.py [--seconds S] [--rounds N] [--workers N]
                                     [--engines sha-ni,avx2] [--no-pool] [--server]

Against sha-ni: each round measures sha-ni, the engine, and sha-ni again, and takes the
engine's rate over the mean of the two; the table gives the median of the rounds and their
range (the spread on a shared machine).

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
import statistics
import subprocess
from collections.abc import Callable
from functools import partial

import baseline
import server_hashrate

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
    engines = [e for e in engines if e in old.engines()]  # engines added since have no "before"
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


def against_sha_ni(engines: list[str], seconds: float, rounds: int) -> None:
    """Each engine per prefix class as a ratio to sha-ni, in interleaved rounds."""
    if "sha-ni" not in engines:
        print("sha-ni does not run here: no ratios to it")
        return
    kernels = {engine: CompiledKernel(engine) for engine in engines}

    def rate(engine: str, prefix: bytes) -> float:
        kernel = kernels[engine]
        return search_rate(
            lambda p, n: kernel.search(prefix, p, n, NEVER, LAYOUT_LATEST), seconds, POSITION
        )

    others = [e for e in engines if e != "sha-ni"]
    ratios: dict[tuple[str, str], list[float]] = {}
    sha_ni: dict[str, list[float]] = {}
    for _ in range(rounds):
        for label, prefix in PREFIX_CLASSES.items():
            for engine in others:
                before = rate("sha-ni", prefix)
                now = rate(engine, prefix)
                after = rate("sha-ni", prefix)
                ratios.setdefault((label, engine), []).append(2 * now / (before + after))
                sha_ni.setdefault(label, []).extend((before, after))
    print(
        f"{'prefix class':<26}{'engine':<12}{'x sha-ni: median':>17}{'range':>15}{'sha-ni M/s':>12}"
    )
    for label in PREFIX_CLASSES:
        for engine in others:
            r = ratios[(label, engine)]
            print(
                f"{label:<26}{engine:<12}{statistics.median(r):>16.2f}x"
                f"{f'{min(r):.2f}-{max(r):.2f}':>15}{max(sha_ni[label]) / 1e6:>12.1f}"
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
    parser.add_argument(
        "--server", action="store_true", help="also one job through the MCP server, as a ratio"
    )
    args = parser.parse_args()
    print(f"CPU: {cpu_model()} ({default_workers()} logical CPUs)")
    print(f"kernel: {kernel_path()}")
    if native._ext is not None:
        engines = args.engines.split(",") if args.engines else list(native._ext.engines())
        print(f"per core, {args.rounds} interleaved rounds of {args.seconds} s, against sha-ni:")
        against_sha_ni(engines, args.seconds, args.rounds)
        print()
        print(f"per core, best of {args.rounds} interleaved rounds of {args.seconds} s:")
        compare(engines, args.seconds, args.rounds)
    if not args.no_pool:
        print()
        run(max(args.seconds, 1.0), args.workers, rounds=args.rounds)
    if args.server:
        print()
        server_hashrate.compare(args.workers or default_workers(), 5.0, args.rounds)


if __name__ == "__main__":
    main()
