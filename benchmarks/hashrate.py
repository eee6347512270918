"""Hash rates of every kernel and of the pool with 1..POW_WORKERS workers.

Usage: python benchmarks/hashrate.py [--seconds S] [--workers N]
Each rate is printed with its ratio to a naive hashlib loop measured in the same run.
"""

from __future__ import annotations

import argparse
import os

from pow.bench import run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=2.0, help="per measurement")
    parser.add_argument("--rounds", type=int, default=3, help="figures are the best of these")
    parser.add_argument(
        "--workers", type=int, default=int(os.environ.get("POW_WORKERS", 0)) or None
    )
    args = parser.parse_args()
    run(args.seconds, args.workers, rounds=args.rounds)


if __name__ == "__main__":
    main()
