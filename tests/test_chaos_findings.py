"""What the chaos run (benchmarks/chaos.py) found, each replayed as a plain test."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from pow_mcp.store import JobStatus, StoreSettings, open_store, utc_now
from pow_mcp.store.record import Attempt, Checkpoint
from tests.mcp_helpers import call, connect
from tests.store_helpers import make_record


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
