"""Hash rate of a job run through the real MCP server, against the bare pool in the same run.

Usage: python benchmarks/server_hashrate.py [--seconds S] [--workers N]
Starts `pow-mcp` over stdio with the SDK client, runs one job that cannot find a proof for
about S seconds (max_iterations), and divides its hashes by its running time.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from datetime import datetime
from pathlib import Path

import anyio
from mcp import Client
from mcp.client.stdio import StdioServerParameters

from pow_mcp.pow.bench import cpu_model, pool_rate
from pow_mcp.pow.pool import default_workers

ROOT = Path(__file__).resolve().parent.parent


async def through_server(workers: int, hashes: int) -> float:
    with tempfile.TemporaryDirectory() as data_dir:
        params = StdioServerParameters(
            command=sys.executable,
            args=["-m", "pow_mcp.server.cli", "--workers", str(workers), "--data-dir", data_dir],
            cwd=ROOT,
        )
        async with Client(params, read_timeout_seconds=600) as client:
            started = await client.call_tool(
                "start_proof_of_work",
                {"prefix": "5-42BUILD1000NONCE", "difficulty": 64, "max_iterations": hashes},
            )
            assert started.structured_content is not None
            job_id = started.structured_content["job_id"]
            while True:
                done = await client.call_tool(
                    "wait_for_job", {"job_id": job_id, "timeout_seconds": 300}
                )
                record = done.structured_content
                assert record is not None
                if not record["timed_out"]:
                    break
    began = datetime.fromisoformat(record["started_at"])
    ended = datetime.fromisoformat(record["completed_at"])
    return float(record["progress"]["hashes"]) / (ended - began).total_seconds()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--workers", type=int, default=default_workers())
    parser.add_argument("--rounds", type=int, default=3, help="figures are the best of these")
    args = parser.parse_args()
    pool = server = 0.0
    for _ in range(args.rounds):  # interleaved, so a noisy minute hits both figures alike
        pool = max(pool, pool_rate(args.workers, 2.0))
        server = max(server, anyio.run(through_server, args.workers, int(pool * args.seconds)))
    print(f"CPU: {cpu_model()}; {args.workers} workers; best of {args.rounds} rounds")
    print(f"bare pool (baseline)        {pool / 1e6:8.2f} M hashes/s   1.00x")
    print(f"one job through the server  {server / 1e6:8.2f} M hashes/s   {server / pool:4.2f}x")


if __name__ == "__main__":
    main()
