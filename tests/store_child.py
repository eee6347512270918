"""A process that uses a file job store, for tests that run several or SIGKILL them.

Usage: python tests/store_child.py MODE DATA_DIR [N]

Prints `READY <instance id>` once its store is open, and `DURABLE <job id> <status>`
right after each durable call (create, terminal update) returns. Modes:

- crash: create and finish jobs in a loop forever (three at a time; about one in
  five stays running) with a short debounce, until killed.
- hold: create N running jobs, flush, print `HOLDING`, wait for stdin to close, close.
- burst: wait for a `GO` line on stdin, create and complete N jobs (ten at a time),
  print `DONE`, close the store.
"""

from __future__ import annotations

import itertools
import logging
import secrets
import sys
from pathlib import Path

import anyio

from store import JobRecord, JobStatus, JobStore, Progress, open_store, utc_now


def report(job_id: str, status: JobStatus) -> None:
    sys.stdout.write(f"DURABLE {job_id} {status.value}\n")  # one write: never a torn line
    sys.stdout.flush()


async def new_job(store: JobStore, status: JobStatus = JobStatus.QUEUED) -> JobRecord:
    now = utc_now()
    record = JobRecord(
        job_id=f"pow_{int(now.timestamp() * 1000)}_{secrets.token_hex(6)}",
        status=status,
        created_at=now,
        updated_at=now,
        job_data={"prefix": "store-child-", "difficulty": 3},
    )
    await store.create(record)
    report(record.job_id, status)
    return record


async def finish(store: JobStore, record: JobRecord, status: JobStatus, hashes: int) -> None:
    running = record.model_copy(update={"status": JobStatus.RUNNING, "started_at": utc_now()})
    await store.update(running)  # not durable: rides along with a later write
    for step in range(1, 4):
        await store.update(
            running.model_copy(update={"progress": Progress(hashes=hashes * step // 3)})
        )
    if status is JobStatus.RUNNING:
        return
    now = utc_now()
    await store.update(
        running.model_copy(
            update={"status": status, "completed_at": now, "updated_at": now, "error": None}
        )
    )
    report(record.job_id, status)


async def crash_loop(store: JobStore, worker: int) -> None:
    finals = [JobStatus.COMPLETED] * 6 + [JobStatus.FAILED, JobStatus.CANCELLED]
    finals += [JobStatus.RUNNING] * 2
    for n in itertools.count():
        record = await new_job(store)
        await finish(store, record, finals[(n * 3 + worker) % len(finals)], 1000 + n)


async def main(mode: str, data_dir: Path, count: int) -> None:
    debounce = 0.02 if mode == "crash" else 0.2
    async with open_store(data_dir, persist=True, debounce_seconds=debounce) as store:
        print("READY", store.instance_id, flush=True)
        if mode == "crash":
            async with anyio.create_task_group() as tg:
                for worker in range(3):
                    tg.start_soon(crash_loop, store, worker)
        elif mode == "hold":
            for _ in range(count):
                await finish(store, await new_job(store), JobStatus.RUNNING, 10)
            await store.flush()
            print("HOLDING", flush=True)
            await anyio.to_thread.run_sync(sys.stdin.read)  # until the test closes stdin
        elif mode == "burst":
            line = await anyio.to_thread.run_sync(sys.stdin.readline)
            assert line.strip() == "GO", line
            limiter = anyio.CapacityLimiter(10)

            async def one() -> None:
                async with limiter:
                    await finish(store, await new_job(store), JobStatus.COMPLETED, 10)

            async with anyio.create_task_group() as tg:
                for _ in range(count):
                    tg.start_soon(one)
            print("DONE", flush=True)
        else:
            raise SystemExit(f"unknown mode {mode!r}")


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    anyio.run(main, sys.argv[1], Path(sys.argv[2]), int(sys.argv[3]) if len(sys.argv) > 3 else 0)
