"""A process that uses a job store, for tests that run several or SIGKILL them.

Usage: python tests/store_child.py MODE DATA_DIR URL [N]   (URL "-": the JSON file)

Prints `READY <instance id>` once its store is open, and `DURABLE <job id> <status>`
right after each durable call (create, finish) returns. Modes:

- crash: create, run and finish jobs in a loop forever (three at a time; about one in
  five stays running), until killed.
- hold: create N running jobs, print `HOLDING`, wait for stdin to close, close.
- burst: wait for a `GO` line on stdin, create and complete N jobs (ten at a time),
  print `DONE`, close the store.
"""

from __future__ import annotations

import itertools
import logging
import os
import secrets
import sys
from multiprocessing.connection import Connection
from pathlib import Path

import anyio

from pow_mcp.store import (
    JobRecord,
    JobStatus,
    JobStore,
    Progress,
    StoreSettings,
    open_store,
    utc_now,
)


def report(job_id: str, status: JobStatus) -> None:
    sys.stdout.write(f"DURABLE {job_id} {status.value}\n")  # one write: never a torn line
    sys.stdout.flush()


async def new_job(store: JobStore) -> JobRecord:
    now = utc_now()
    record = JobRecord(
        job_id=f"pow_{int(now.timestamp() * 1000)}_{secrets.token_hex(6)}",
        status=JobStatus.QUEUED,
        created_at=now,
        updated_at=now,
        job_data={"prefix": "store-child-", "difficulty": 3},
        owner=store.instance_id,
    )
    await store.create([record])
    report(record.job_id, record.status)
    return record


async def run(store: JobStore, record: JobRecord, status: JobStatus, hashes: int) -> None:
    running = record.model_copy(update={"status": JobStatus.RUNNING, "started_at": utc_now()})
    assert await store.claim(running)
    for step in range(1, 4):
        progress = Progress(hashes=hashes * step // 3)
        await store.save_progress([running.model_copy(update={"progress": progress})])
    if status is JobStatus.RUNNING:
        return
    assert await store.finish(running.model_copy(update={"status": status}))
    report(record.job_id, status)


async def crash_loop(store: JobStore, worker: int) -> None:
    finals = [JobStatus.COMPLETED] * 6 + [JobStatus.FAILED, JobStatus.CANCELLED]
    finals += [JobStatus.RUNNING] * 2
    for n in itertools.count():
        record = await new_job(store)
        await run(store, record, finals[(n * 3 + worker) % len(finals)], 1000 + n)


async def main(mode: str, data_dir: Path, url: str, count: int) -> None:
    lease = float(os.environ.get("JOBS_LEASE_SECONDS", "15"))
    settings = StoreSettings(
        data_dir, database_url=None if url == "-" else url, lease_seconds=lease
    )
    async with open_store(settings) as store:
        print("READY", store.instance_id, flush=True)
        if mode == "crash":
            async with anyio.create_task_group() as tg:
                for worker in range(3):
                    tg.start_soon(crash_loop, store, worker)
        elif mode == "hold":
            for _ in range(count):
                await run(store, await new_job(store), JobStatus.RUNNING, 10)
            print("HOLDING", flush=True)
            await anyio.to_thread.run_sync(sys.stdin.read)  # until the test closes stdin
        elif mode == "burst":
            line = await anyio.to_thread.run_sync(sys.stdin.readline)
            assert line.strip() == "GO", line
            limiter = anyio.CapacityLimiter(10)

            async def one() -> None:
                async with limiter:
                    await run(store, await new_job(store), JobStatus.COMPLETED, 10)

            async with anyio.create_task_group() as tg:
                for _ in range(count):
                    tg.start_soon(one)
            print("DONE", flush=True)
        else:
            raise SystemExit(f"unknown mode {mode!r}")


def start(args: list[str]) -> None:
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    anyio.run(main, args[0], Path(args[1]), args[2], int(args[3]) if len(args) > 3 else 0)


def forked(args: list[str], env: dict[str, str], stdout: Connection, stderr: str) -> None:
    """The child's life as a fork of the forkserver (tests/store_helpers.py: fork): its
    stdout is the pipe `stdout`, its stderr appends to the file `stderr`."""
    os.dup2(stdout.fileno(), 1)
    stdout.close()
    err = os.open(stderr, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    os.dup2(err, 2)
    os.close(err)
    os.environ.update(env)
    start(args)


if __name__ == "__main__":
    start(sys.argv[1:])
