"""SIGKILL a process using the file store 50 times: nothing it reported durable is lost."""

from __future__ import annotations

import json
import os
import random
import signal
import time
from pathlib import Path

import anyio

from store import INTERRUPTED_ERROR, JobRecord, open_store
from store.codec import parse
from store.record import TERMINAL, JobStatus
from tests.store_helpers import Lines, spawn

KILLS = 50


async def _open_and_list(data_dir: Path) -> dict[str, JobRecord]:
    async with open_store(data_dir, persist=True) as store:
        page, total = await store.list(limit=100_000)
        assert len(page) == total
        return {r.job_id: r for r in page}


def _count(lines: list[str]) -> int:
    return sum(line.startswith("DURABLE") for line in lines)


def check_file(data_dir: Path, reported: dict[str, JobStatus], context: str) -> int:
    jobs = data_dir / "jobs.json"
    parsed = parse(jobs.read_bytes())  # raises if the file is not a complete jobs file
    assert not parsed.bad, (context, parsed.bad)
    records = parsed.contents.records
    for job_id, status in reported.items():
        assert job_id in records, f"{context}: {job_id} was reported durable and is lost"
        if status in TERMINAL:
            assert records[job_id].status == status, (context, job_id, records[job_id].status)
    backup = data_dir / "jobs.json.bak"
    if backup.exists():
        json.loads(backup.read_text())  # the backup is always a complete file too
    assert not list(data_dir.glob("*corrupt*")), f"{context}: a kill left a damaged file"
    return len(records)


def test_sigkill_never_loses_a_durable_job(tmp_path: Path) -> None:
    rng = random.Random(20261123)
    data_dir = tmp_path / "jobs"
    stderr = tmp_path / "children.log"
    reported: dict[str, JobStatus] = {}
    total_lines = 0
    before_ready = 0
    # One child always starts up while the previous one works, as a second instance on the
    # same directory, so a kill every few hundred milliseconds does not wait on startups.
    spare = spawn("crash", data_dir, stderr=stderr), time.monotonic()
    try:
        for kill in range(KILLS):
            (proc, born), spare = spare, (spawn("crash", data_dir, stderr=stderr), time.monotonic())
            out = Lines(proc)
            try:
                if rng.random() < 0.6:
                    wanted = rng.randint(1, 25)
                    how = f"after {wanted} durable lines"
                    out.wait_for(lambda lines: _count(lines) >= wanted, timeout=10)  # noqa: B023
                else:
                    # From its start: some land while it opens the store.
                    delay = rng.uniform(0.05, 0.6)
                    how = f"{delay:.2f} s after its start"
                    out.wait_for(lambda lines: False, timeout=born + delay - time.monotonic())
            finally:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait()
            out.drain()  # lines printed before the kill count as reported too
            assert proc.returncode == -signal.SIGKILL, stderr.read_text()[-2000:]
            before_ready += not any(line.startswith("READY") for line in out.lines)
            for job_id, status in out.durable():
                if status in TERMINAL or job_id not in reported:
                    reported[job_id] = status
            total_lines += len(out.lines)
            if (data_dir / "jobs.json").exists():
                check_file(data_dir, reported, f"kill {kill} ({how})")
    finally:
        spare[0].kill()
        spare[0].wait()
    assert len(reported) > 100, "the children should have reported many durable jobs"
    # A last instance opens the directory: everything is there, nothing is left running.
    records = anyio.run(_open_and_list, data_dir)
    assert set(reported) <= set(records)
    for job_id, status in reported.items():
        if status in TERMINAL:
            assert records[job_id].status == status
    assert all(record.is_terminal for record in records.values())
    assert any(record.error == INTERRUPTED_ERROR for record in records.values())
    assert sum(s in TERMINAL for s in reported.values()) > 50
    assert total_lines > KILLS
    assert before_ready >= 2, "some kills should land while a child opens the store"
    assert list((data_dir / "instances").iterdir()) == []  # dead instances' files swept
