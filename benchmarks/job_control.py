"""Job control through the real server (stdio, the SDK client), as an agent would use it.

Usage: python benchmarks/job_control.py [--workers N] [--pauses 30]

- Crash recovery: a job hashes under JOBS_RECOVERY=resume, the server is SIGKILLed, a new
  one resumes it from its checkpoint. Printed: the hashes done twice (hashed before the
  kill but not yet saved), as a fraction of the job and in seconds of hashing, next to the
  debounce window (JOBS_SAVE_DEBOUNCE_SECONDS) that bounds them.
- Pause: p50/p99 of a pause_job call on a hashing job (it returns once the workers are
  free), and of resume-to-first-progress (resume_job until the job's hash count moves).
- The dispatcher's cost: one job's hash rate alone, then with 1,000 more jobs queued
  behind it (of lower priority); the ratio should be close to 1.
"""

from __future__ import annotations

import argparse
import os
import signal
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import anyio
from mcp import Client
from mcp_server import server, server_pid


async def call(client: Client, tool: str, **arguments: Any) -> dict[str, Any]:
    result = await client.call_tool(tool, arguments)
    assert not result.is_error and result.structured_content is not None, result.content
    return result.structured_content


async def hashes_of(client: Client, job_id: str) -> tuple[str, int]:
    record = await call(client, "query_proof_of_work_status", job_id=job_id)
    return record["status"], record["progress"]["hashes"]


async def until_moving(client: Client, job_id: str, above: int = 0) -> int:
    while True:
        status, hashes = await hashes_of(client, job_id)
        if status == "running" and hashes > above:
            return hashes
        await anyio.sleep(0.002)


async def crash(workers: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp)
        env = {"JOBS_RECOVERY": "resume", "POW_WORKERS": str(workers)}
        try:
            async with server(data, **env) as client:
                job = await call(client, "start_proof_of_work", prefix="crash-", difficulty=64)
                await until_moving(client, job["job_id"])
                began = time.monotonic()
                await anyio.sleep(2.5)
                _, live = await hashes_of(client, job["job_id"])
                hashing = time.monotonic() - began
                os.kill(server_pid(data), signal.SIGKILL)
                await client.list_tools()
        except Exception:  # the client sees its server die, as expected
            pass
        async with server(data, **env) as client:
            record = await call(client, "query_proof_of_work_status", job_id=job["job_id"])
            while not record["recoveries"]:
                await anyio.sleep(0.05)
                record = await call(client, "query_proof_of_work_status", job_id=job["job_id"])
            saved = record["recoveries"][0]["hashes"]
            await call(client, "cancel_job", job_id=job["job_id"])
    per_second = live / hashing
    lost = max(0, live - saved)
    print(f"crash under JOBS_RECOVERY=resume ({workers} workers, debounce 1.0 s):")
    print(f"  hashed before the kill       {live:>14,}")
    print(f"  saved (the resume point)     {saved:>14,}")
    print(
        f"  hashed twice                 {lost:>14,}  = {lost / live:.1%} of the job so far, "
        f"{lost / per_second:.2f} s of hashing (the debounce window is 1.0 s)"
    )


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def pauses(workers: int, rounds: int) -> None:
    pause_times: list[float] = []
    resume_times: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        async with server(Path(tmp), POW_WORKERS=str(workers)) as client:
            job = await call(client, "start_proof_of_work", prefix="pause-", difficulty=64)
            job_id = job["job_id"]
            await until_moving(client, job_id)
            for _ in range(rounds):
                await anyio.sleep(0.2)
                start = time.perf_counter()
                paused = await call(client, "pause_job", job_id=job_id)
                pause_times.append(time.perf_counter() - start)
                start = time.perf_counter()
                await call(client, "resume_job", job_id=job_id)
                await until_moving(client, job_id, paused["hashes"])
                resume_times.append(time.perf_counter() - start)
            await call(client, "cancel_job", job_id=job_id)
    print(f"pause and resume, {rounds} rounds ({workers} workers):")
    for name, values in (("pause_job", pause_times), ("resume to first progress", resume_times)):
        print(
            f"  {name:<26} p50 {pct(values, 0.5) * 1000:7.1f} ms   "
            f"p99 {pct(values, 0.99) * 1000:7.1f} ms   max {max(values) * 1000:7.1f} ms"
        )


async def rate_of(client: Client, seconds: float, rate_hint: float) -> float:
    hashes = int(rate_hint * seconds)
    job = await call(
        client, "start_proof_of_work", prefix="rate-", difficulty=64, max_iterations=hashes
    )
    while True:
        done = await call(client, "wait_for_job", job_id=job["job_id"], timeout_seconds=300)
        if not done["timed_out"]:
            break
    began = datetime.fromisoformat(done["started_at"])
    ended = datetime.fromisoformat(done["completed_at"])
    return float(done["progress"]["hashes"]) / (ended - began).total_seconds()


async def dispatcher_cost(workers: int, queued: int, seconds: float) -> None:
    alone: list[float] = []
    crowded: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        async with server(Path(tmp), POW_WORKERS=str(workers)) as client:
            hint = await rate_of(client, 1.0, 2e7)
            for _ in range(2):
                alone.append(await rate_of(client, seconds, hint))
            entries = [
                {"prefix": f"q{i}-", "difficulty": 64, "priority": "low"} for i in range(100)
            ]
            batches = [
                await call(client, "start_proof_of_work_batch", jobs=entries)
                for _ in range(queued // 100)
            ]
            for _ in range(2):
                crowded.append(await rate_of(client, seconds, hint))
            for batch in batches:
                for job_id in batch["job_ids"]:
                    await call(client, "cancel_job", job_id=job_id)
    a, c = max(alone), max(crowded)
    print(f"one job's hash rate ({workers} workers, best of 2):")
    print(f"  alone                        {a / 1e6:8.2f} M hashes/s   1.00x")
    print(f"  with {queued:,} jobs queued      {c / 1e6:8.2f} M hashes/s   {c / a:4.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--pauses", type=int, default=30)
    parser.add_argument("--queued", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=4.0)
    args = parser.parse_args()
    anyio.run(crash, args.workers)
    anyio.run(pauses, args.workers, args.pauses)
    anyio.run(dispatcher_cost, args.workers, args.queued, args.seconds)


if __name__ == "__main__":
    main()
