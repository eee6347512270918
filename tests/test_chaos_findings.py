"""What the chaos run (benchmarks/chaos.py) found, each replayed as a plain test."""

from __future__ import annotations

import logging
from datetime import timedelta
from pathlib import Path

import pytest

from pow_mcp.store import JobRecord, JobStatus, StoreSettings, open_store, utc_now
from pow_mcp.store.record import Attempt, Checkpoint
from tests.mcp_helpers import call, connect
from tests.store_helpers import make_record
from tests.test_manager import manager


async def test_an_attempt_left_open_by_a_pause_elsewhere_is_closed(tmp_path: Path) -> None:
    # Chaos seed 101, SQLite: a job running on server A was paused through server B and
    # resumed through B before A recorded the pause (A was frozen): A's attempt stayed open
    # for good beside B's, as if both still ran the job.
    began = utc_now() - timedelta(seconds=30)
    open_attempt = Attempt(started_at=began, hashes=0, instance="gone-1234")
    paused = make_record(
        JobStatus.PAUSED,
        owner="gone-1234",
        job_data={"prefix": "dangling-", "difficulty": 1},
        attempts=[open_attempt],
        checkpoint=Checkpoint(layout=2),
    )
    async with open_store(StoreSettings(tmp_path)) as store:
        await store.create([paused])
    async with connect(tmp_path) as client:
        await call(client, "resume_job", job_id=paused.job_id)
        done = await call(client, "wait_for_job", job_id=paused.job_id, timeout_seconds=60)
    assert done["status"] == "completed"
    first, second = done["attempts"]
    assert first["instance"] == "gone-1234" and first["outcome"] == "paused"
    assert first["ended_at"] is not None and first["ended_at"] <= second["started_at"]
    assert second["instance"] != "gone-1234" and second["outcome"] == "completed"


async def test_a_recovery_lost_to_a_peer_is_not_logged_as_done(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Chaos seed 202, PostgreSQL: two servers each logged "resumed here" for the same job
    # after a third one froze; only one of them had taken it.
    gone = make_record(
        JobStatus.RUNNING, owner="gone-1", job_data={"prefix": "r-", "difficulty": 2}
    )
    async with manager(tmp_path, recovery="resume") as m:
        await m.store.create([gone.model_copy(update={"owner": "peer-2"})])  # taken already
        stale = [gone]  # what this instance saw a moment before the peer took it
        m.store.orphans = lambda: _returning(stale)  # type: ignore[method-assign]
        with caplog.at_level(logging.INFO, logger="pow_mcp.server.jobs.manager"):
            assert await m.recover_orphans() == 0
        assert not any(gone.job_id in r.getMessage() for r in caplog.records)
        assert (await m.store.get(gone.job_id)).owner == "peer-2"  # type: ignore[union-attr]


async def _returning(records: list[JobRecord]) -> list[JobRecord]:
    return records
