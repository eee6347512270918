"""Job stores at scale, through the real server: start-up, memory, tool latencies.

Usage: python benchmarks/store.py [--sizes 1000 100000] [--backends sqlite postgresql json]
                                  [--calls 300] [--postgres-url URL]

For each backend and size: seed that many finished jobs, start `pow-mcp` over stdio with
the SDK client (as an MCP client would) and measure
- start-up: from spawning the server to its first answer (the worker pool included);
- the server's resident memory (VmRSS) after the calls;
- p50/p99 latency of `query_proof_of_work_status` (a random job), `start_proof_of_work`
  (a durable create) and `list_jobs` (a page of 50), each next to the latency of
  `verify_proof_of_work` measured in the same run: an MCP round trip that never touches
  the store, the floor any tool call pays.
Every figure is also printed as a ratio to the same backend's run at the smallest size.
The JSON store's memory per job is measured in-process (tracemalloc) as well.
PostgreSQL: a local server is started in a temporary directory (tests/pg_server.py),
unless --postgres-url names one.
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import os
import random
import tempfile
import time
import tracemalloc
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import anyio
from mcp_server import server, server_pid

from pow_mcp.store import JobQuery, JobStatus, StoreSettings, connect, new_instance_id
from pow_mcp.store.jsonfile import JsonFileJobStore
from pow_mcp.store.jsonfile.codec import encode_line, render
from pow_mcp.store.record import JobRecord, JobResult, Progress, ProofOfWork, utc_now

SEED_BATCH = 2000


def make_records(count: int) -> list[JobRecord]:
    """Finished jobs as a busy server leaves them (about 900 bytes of JSON each)."""
    start = utc_now() - timedelta(seconds=count)
    owner = new_instance_id()
    return [
        JobRecord(
            job_id=f"pow_{1_704_067_200_000 + n}_{n:010d}",
            status=JobStatus.COMPLETED,
            created_at=(at := start + timedelta(seconds=n)),
            started_at=at,
            updated_at=at,
            completed_at=at,
            job_data={
                "prefix": f"5-{n}BUILD1000NONCE",
                "difficulty": 6,
                "priority": "normal",
                "label": f"benchmark job {n}",
            },
            progress=Progress(hashes=16_000_000 + n, hashrate=2.5e6, best_zeros=6),
            result=JobResult(
                proof_of_work=ProofOfWork(
                    hash="000000" + f"{n:058x}",
                    nonce=str(16_000_000 + n),
                    iterations=16_000_001 + n,
                    valid=True,
                    difficulty_met=6,
                    difficulty=6,
                    computation_time_ms=6400.5,
                )
            ),
            owner=owner,
            kernel="sha-ni",
        )
        for n in range(count)
    ]


async def seed(settings: StoreSettings, records: list[JobRecord]) -> None:
    if settings.database_url is None:  # one write of the whole file, as the store writes it
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        data = render(encode_line(r.job_id, r) for r in records)
        (settings.data_dir / "jobs.json").write_bytes(data)
        return
    store = await connect(settings)
    try:
        for start in range(0, len(records), SEED_BATCH):
            await store.create(records[start : start + SEED_BATCH])
    finally:
        await store.close()


@dataclass
class Figures:
    startup: float
    rss_mb: float
    latencies: dict[str, list[float]]

    def p(self, name: str, q: float) -> float:
        values = sorted(self.latencies[name])
        return values[min(len(values) - 1, int(q * len(values)))]


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def through_server(settings: StoreSettings, ids: list[str], calls: int) -> Figures:
    env = {"POW_WORKERS": "1", "JOBS_RETENTION_SECONDS": "1e9"}
    if settings.database_url:
        env["JOBS_DATABASE_URL"] = settings.database_url
    rng = random.Random(1)
    began = time.perf_counter()
    async with server(settings.data_dir, **env) as client:
        await client.list_tools()
        startup = time.perf_counter() - began
        calls_by_name = {
            "floor: verify_proof_of_work": (
                "verify_proof_of_work",
                lambda: {"prefix": "abc-", "nonce": "554171", "difficulty": 5},
            ),
            "query_proof_of_work_status": (
                "query_proof_of_work_status",
                lambda: {"job_id": rng.choice(ids)},
            ),
            "start_proof_of_work": (
                "start_proof_of_work",
                lambda: {"prefix": f"bench-{rng.random()}-", "difficulty": 1},
            ),
            "list_jobs (page of 50)": ("list_jobs", lambda: {"limit": 50}),
        }
        latencies: dict[str, list[float]] = {name: [] for name in calls_by_name}
        for round_ in range(calls):  # interleaved, so a noisy moment hits every call alike
            for name, (tool, arguments) in calls_by_name.items():
                start = time.perf_counter()
                result = await client.call_tool(tool, arguments())
                elapsed = time.perf_counter() - start
                assert not result.is_error, result.content
                if round_ >= 10:  # warm-up
                    latencies[name].append(elapsed)
        memory = rss_mb(server_pid(settings.data_dir))
    return Figures(startup, memory, latencies)


async def in_process(settings: StoreSettings, ids: list[str], calls: int) -> dict[str, list[float]]:
    """The same three operations on the store itself, in this process: what the store costs
    without MCP around it."""
    rng = random.Random(2)
    store = await connect(settings)
    owner = store.instance_id
    times: dict[str, list[float]] = {"get": [], "create (durable)": [], "find (page of 50)": []}
    try:
        for n in range(calls):
            start = time.perf_counter()
            await store.get(rng.choice(ids))
            times["get"].append(time.perf_counter() - start)
            record = make_records(1)[0].model_copy(
                update={"job_id": f"pow_9_inproc{n:06d}", "owner": owner}
            )
            start = time.perf_counter()
            await store.create([record])
            times["create (durable)"].append(time.perf_counter() - start)
            start = time.perf_counter()
            await store.find(JobQuery(limit=50))
            times["find (page of 50)"].append(time.perf_counter() - start)
    finally:
        await store.close()
    return times


def json_memory_per_job(count: int) -> float:
    """Bytes per job the open JSON store holds (tracemalloc, in this process)."""
    records = make_records(count)
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        (directory / "jobs.json").write_bytes(render(encode_line(r.job_id, r) for r in records))
        del records
        gc.collect()

        async def measure() -> int:
            tracemalloc.start()
            try:
                before = tracemalloc.get_traced_memory()[0]
                store = await JsonFileJobStore.open(directory, new_instance_id())
                gc.collect()
                used = tracemalloc.get_traced_memory()[0] - before
            finally:
                tracemalloc.stop()
            await store.close()
            return used

        return anyio.run(measure) / count


def report(backend: str, size: int, figures: Figures, base: Figures) -> None:
    print(f"\n{backend}, {size:,} jobs")
    print(
        f"  start-up to first answer    {figures.startup:7.2f} s     "
        f"{figures.startup / base.startup:5.2f}x the smallest"
    )
    print(
        f"  server memory (RSS)         {figures.rss_mb:7.1f} MB    "
        f"{figures.rss_mb - base.rss_mb:+5.1f} MB vs the smallest"
    )
    floor = figures.p("floor: verify_proof_of_work", 0.99)
    for name in figures.latencies:
        p50, p99 = figures.p(name, 0.5) * 1000, figures.p(name, 0.99) * 1000
        print(
            f"  {name:<30} p50 {p50:6.2f} ms  p99 {p99:6.2f} ms   "
            f"{figures.p(name, 0.99) / base.p(name, 0.99):5.2f}x the smallest, "
            f"{figures.p(name, 0.99) / floor:5.2f}x the floor"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 100_000])
    parser.add_argument("--backends", nargs="+", default=["sqlite", "postgresql", "json"])
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--json-sizes", type=int, nargs="+", default=[1000, 10_000])
    parser.add_argument("--postgres-url", help="use this server instead of starting one")
    args = parser.parse_args()
    logging.getLogger().setLevel(logging.ERROR)
    postgres = None
    print(f"{os.cpu_count()} CPUs; {args.calls} calls of each tool per run, interleaved")
    try:
        for backend in args.backends:
            sizes = args.json_sizes if backend == "json" else args.sizes
            base: Figures | None = None
            for size in sizes:
                with tempfile.TemporaryDirectory() as tmp:
                    url = None
                    if backend == "sqlite":
                        url = "sqlite:///jobs.db"
                    elif backend == "postgresql":
                        if args.postgres_url is None and postgres is None:
                            from tests.pg_server import PostgresServer

                            postgres = PostgresServer()
                            postgres.start()
                        url = args.postgres_url or postgres.url(postgres.create_database())
                    settings = StoreSettings(Path(tmp) / "data", database_url=url)
                    records = make_records(size)
                    ids = [r.job_id for r in records]
                    anyio.run(seed, settings, records)
                    del records
                    figures = anyio.run(through_server, settings, ids, args.calls)
                    base = base or figures
                    report(backend, size, figures, base)
                    store_times = anyio.run(in_process, settings, ids, args.calls)
                    for name, values in store_times.items():
                        values.sort()
                        p50 = values[len(values) // 2] * 1000
                        p99 = values[min(len(values) - 1, int(0.99 * len(values)))] * 1000
                        print(f"  store alone: {name:<19} p50 {p50:6.2f} ms  p99 {p99:6.2f} ms")
        if "json" in args.backends:
            count = max(args.json_sizes)
            per_job = json_memory_per_job(count)
            print(f"\njson store memory: {per_job / 1000:.2f} kB per job ({count:,} jobs open)")
    finally:
        if postgres is not None:
            postgres.cleanup()
    print(json.dumps({"done": True}))


if __name__ == "__main__":
    main()
