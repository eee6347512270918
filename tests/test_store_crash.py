"""SIGKILL processes writing to a store again and again: nothing they reported durable is lost,
on the JSON file (50 kills), SQLite and PostgreSQL (25 each). The processes are forked from a
process that has imported the store (tests/store_helpers.py: fork), so the kills land in the
store's work and its opening, not in Python's imports."""

from __future__ import annotations

import json
import os
import random
import signal
import time
from pathlib import Path

import anyio
import pytest

from pow_mcp.store import JobQuery, JobRecord, StoreSettings, connect
from pow_mcp.store.jsonfile.codec import parse
from pow_mcp.store.record import TERMINAL, JobStatus
from tests.conftest import PERSISTENT_KINDS
from tests.store_helpers import Lines, fork

KILLS = {"json": 50, "sqlite": 25, "postgresql": 25}


async def _everything(settings: StoreSettings) -> dict[str, JobRecord]:
    store = await connect(settings)
    try:
        page, total = await store.find(JobQuery(limit=1000))
        while len(page) < total:
            more, _ = await store.find(JobQuery(limit=1000, offset=len(page)))
            page += more
        return {r.job_id: r for r in page}
    finally:
        await store.close()


def _count(lines: list[str]) -> int:
    return sum(line.startswith("DURABLE") for line in lines)


def check_json_file(data_dir: Path, reported: dict[str, JobStatus], context: str) -> None:
    """The file is whole and holds everything reported (read raw, without the store)."""
    jobs = data_dir / "jobs.json"
    if not jobs.exists():
        assert not reported, f"{context}: the jobs file vanished"
        return
    parsed = parse(jobs.read_bytes())  # raises if the file is not a complete jobs file
    assert not parsed.bad, (context, parsed.bad)
    entries = parsed.contents.entries
    for job_id, status in reported.items():
        assert job_id in entries, f"{context}: {job_id} was reported durable and is lost"
        if status in TERMINAL:
            assert entries[job_id].status == status, (context, job_id, entries[job_id].status)
    backup = data_dir / "jobs.json.bak"
    if backup.exists():
        json.loads(backup.read_text())  # the backup is always a complete file too
    assert not list(data_dir.glob("*corrupt*")), f"{context}: a kill left a damaged file"


@pytest.mark.parametrize("kind", PERSISTENT_KINDS, indirect=True)
def test_sigkill_never_loses_a_durable_job(
    kind: str, store_settings: StoreSettings, tmp_path: Path
) -> None:
    rng = random.Random(20261123)
    stderr = tmp_path / "children.log"
    reported: dict[str, JobStatus] = {}
    before_ready = 0
    for kill in range(KILLS[kind]):
        proc, born = fork("crash", store_settings, stderr=stderr), time.monotonic()
        out = Lines(proc)
        try:
            if rng.random() < 0.6:
                wanted = rng.randint(1, 25)
                how = f"after {wanted} durable lines"
                out.wait_for(lambda lines: _count(lines) >= wanted, timeout=10)  # noqa: B023
            else:
                # From its start: about half land while it opens the store (some 40 ms).
                delay = rng.uniform(0.0, 0.1)
                how = f"{delay:.3f} s after its start"
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
        if kind == "json":
            check_json_file(store_settings.data_dir, reported, f"kill {kill} ({how})")
    assert len(reported) > 50, "the children should have reported many durable jobs"
    assert sum(s in TERMINAL for s in reported.values()) > 25
    assert before_ready >= 2, "some kills should land while a child opens the store"
    records = anyio.run(_everything, store_settings)
    assert set(reported) <= set(records)
    for job_id, status in reported.items():
        if status in TERMINAL:
            assert records[job_id].status == status
