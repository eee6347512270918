"""Hash rate of a job run through the real MCP server, against the bare pool in the same run.

Usage: python benchmarks/server_hashrate.py [--seconds S] [--workers N]
Starts `pow-mcp` over stdio with the SDK client, runs one job that cannot find a proof for
about S seconds (max_iterations), and divides its hashes by its running time.
"""

from __future__ import annotations

import argparse
import tempfile

import anyio
from mcp_server import hash_rate, run_job, server

from pow_mcp.pow.bench import cpu_model, pool_rate
from pow_mcp.pow.pool import default_workers


async def through_server(workers: int, hashes: int) -> float:
    with tempfile.TemporaryDirectory() as data_dir:
        async with server(data_dir, POW_WORKERS=str(workers)) as client:
            record = await run_job(client, "5-42BUILD1000NONCE", hashes)
    return hash_rate(record)


def compare(workers: int, seconds: float, rounds: int) -> None:
    """Print the bare pool's rate and one job's through the server, best of interleaved rounds."""
    pool = server = 0.0
    for _ in range(rounds):  # interleaved, so a noisy minute hits both figures alike
        pool = max(pool, pool_rate(workers, 2.0))
        server = max(server, anyio.run(through_server, workers, int(pool * seconds)))
    print(f"CPU: {cpu_model()}; {workers} workers; best of {rounds} rounds")
    print(f"bare pool (baseline)        {pool / 1e6:8.2f} M hashes/s   1.00x")
    print(f"one job through the server  {server / 1e6:8.2f} M hashes/s   {server / pool:4.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--workers", type=int, default=default_workers())
    parser.add_argument("--rounds", type=int, default=3, help="figures are the best of these")
    args = parser.parse_args()
    compare(args.workers, args.seconds, args.rounds)


if __name__ == "__main__":
    main()
