"""Hashing on a Dask cluster: hash rate through MCP against the local pool, and the cost of
a chunk to the scheduler and to the server, from which the README extrapolates.

Usage: python benchmarks/cluster.py [--seconds S] [--workers N] [--rounds R]

1. Hash rate: the real server (stdio, the SDK client) runs one job that cannot find a proof
   for about S seconds (max_iterations), once with POW_CLUSTER=local (a local Dask cluster
   of N worker processes) and once with the local worker pool of N processes, in
   interleaved rounds (a noisy minute hits both alike); the figure is the job's hashes over
   its running time, best of R.
   Beside it, the job's hashes over the CPU time of every pow-mcp process (server, Dask
   scheduler, workers) while it ran: what the cluster's machinery costs, which another
   program's load on a shared machine hardly moves.
2. Cost per chunk: a `dask scheduler` process and N `dask worker` processes; a DaskPool in
   this process hands out tiny chunks (about a millisecond of hashing) as fast as the
   workers take them. The scheduler's CPU time and this process's (the Dask client and the
   pool's bookkeeping: what the server pays) over the number of chunks are each side's cost
   of one chunk, whatever its size.
"""

from __future__ import annotations

import argparse
import contextlib
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator

import anyio
import psutil
from distributed import Client as DaskClient
from mcp_server import hash_rate, run_job, server

from pow_mcp.pow.bench import cpu_model
from pow_mcp.pow.pool.dask import DaskPool
from pow_mcp.pow.scheduler import SearchTask

PREFIX = "5-42BUILD1000NONCE"


def tree_cpu_seconds() -> float:
    """CPU time of this process's children and theirs: the server and its workers."""
    total = 0.0
    for child in psutil.Process().children(recursive=True):
        with contextlib.suppress(psutil.NoSuchProcess):
            total += cpu_seconds(child)
    return total


async def through_server(workers: int, hashes: int, cluster: str | None) -> tuple[float, float]:
    """One job run through the real server: (hashes per second, hashes per CPU-second of
    every pow-mcp process: server, scheduler, workers)."""
    env = {"POW_WORKERS": str(workers), **({"POW_CLUSTER": cluster} if cluster else {})}
    with tempfile.TemporaryDirectory() as data_dir:
        async with server(data_dir, **env) as client:
            cpu_before = tree_cpu_seconds()
            record = await run_job(client, PREFIX, hashes)
            cpu = tree_cpu_seconds() - cpu_before
    return hash_rate(record), float(record["progress"]["hashes"]) / cpu


def cpu_seconds(process: psutil.Process) -> float:
    times = process.cpu_times()
    return float(times.user + times.system)


@contextlib.contextmanager
def dask_cluster(workers: int) -> Iterator[tuple[str, psutil.Process]]:
    """`dask scheduler` and `dask worker` processes: the scheduler's address and process."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    address = f"tcp://127.0.0.1:{port}"
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    dask = [sys.executable, "-m", "dask"]
    scheduler = subprocess.Popen(
        [*dask, "scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"],
        **quiet,  # type: ignore[call-overload]
    )
    worker = subprocess.Popen(
        [*dask, "worker", address, "--nworkers", str(workers), "--nthreads", "1"],
        **quiet,  # type: ignore[call-overload]
    )
    try:
        with DaskClient(address, timeout=30) as client:
            client.wait_for_workers(workers, timeout=60)
        yield address, psutil.Process(scheduler.pid)
    finally:
        for process in (worker, scheduler):
            process.terminate()
            process.wait()


async def cost_per_chunk(workers: int, seconds: float) -> tuple[float, float, float]:
    """(chunks per second, scheduler CPU s per chunk, server-side CPU s per chunk)."""
    with dask_cluster(workers) as (address, scheduler):
        me = psutil.Process()
        # ~1 ms chunks: the chunk rate is then bound by the per-chunk cost, not the hashing.
        async with DaskPool.open(address, chunk_seconds=0.001) as pool:
            handle = pool.submit("cost", SearchTask(PREFIX, 64))
            await anyio.sleep(1.0)  # warm-up: rates measured, pipelines full
            chunks0, sched0, me0 = pool.chunks_sent, cpu_seconds(scheduler), cpu_seconds(me)
            began = time.monotonic()
            await anyio.sleep(seconds)  # the measuring window
            elapsed = time.monotonic() - began
            chunks = pool.chunks_sent - chunks0
            sched = cpu_seconds(scheduler) - sched0
            mine = cpu_seconds(me) - me0
            pool.cancel("cost")
            await handle.wait()
    return chunks / elapsed, sched / chunks, mine / chunks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3, help="figures are the best of these")
    args = parser.parse_args()
    local = dask = local_cpu = dask_cpu = 0.0
    # About `seconds` of work at the pool's rate, measured once by a short local run.
    probe, _ = anyio.run(through_server, args.workers, 200_000_000, None)
    hashes = int(probe * args.seconds)
    for _ in range(args.rounds):  # interleaved, so a noisy minute hits both figures alike
        rate, per_cpu = anyio.run(through_server, args.workers, hashes, None)
        local, local_cpu = max(local, rate), max(local_cpu, per_cpu)
        rate, per_cpu = anyio.run(through_server, args.workers, hashes, "local")
        dask, dask_cpu = max(dask, rate), max(dask_cpu, per_cpu)
    chunk_rate, sched, mine = anyio.run(cost_per_chunk, args.workers, 5.0)
    print(f"CPU: {cpu_model()}; {args.workers} workers; best of {args.rounds} rounds")
    print(f"{'':32} M hashes/s  ratio   M hashes per CPU-s  ratio")
    for name, rate, per_cpu in (
        ("local pool through MCP", local, local_cpu),
        ("POW_CLUSTER=local through MCP", dask, dask_cpu),
    ):
        print(
            f"{name:32} {rate / 1e6:10.2f}  {rate / local:4.2f}x   {per_cpu / 1e6:18.2f}  "
            f"{per_cpu / local_cpu:4.2f}x"
        )
    print(
        f"cost of a chunk: scheduler {sched * 1e3:.2f} ms CPU, server {mine * 1e3:.2f} ms CPU "
        f"(at {chunk_rate:.0f} tiny chunks/s)"
    )
    chunk = 0.5  # DaskPool's chunk_seconds
    print(
        f"overhead per {chunk:g} s chunk: scheduler {sched / chunk:.2%}, server "
        f"{mine / chunk:.2%} of the hashing it stands for"
    )
    for n in (100, 1000):
        per_second = n / chunk  # one chunk per worker thread every `chunk` seconds
        print(
            f"{n:5d} worker threads, {chunk:g} s chunks: {per_second:6.0f} chunks/s; scheduler "
            f"{per_second * sched:5.2f} CPUs, server {per_second * mine:5.2f} CPUs"
        )
    # The scheduler and the pool each handle chunks on one event loop: one CPU at most.
    print(
        f"one CPU each: scheduler {1 / sched:.0f} chunks/s ({chunk / sched:.0f} worker threads), "
        f"server {1 / mine:.0f} chunks/s ({chunk / mine:.0f} worker threads)"
    )


if __name__ == "__main__":
    main()
