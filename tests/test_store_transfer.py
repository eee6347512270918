"""Export and import between stores: the jobs.json format carries everything."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest

from pow_mcp.store import JobStatus, StoreSettings, connect, utc_now
from pow_mcp.store.record import (
    Attempt,
    Checkpoint,
    JobRecord,
    JobResult,
    Progress,
    ProofOfWork,
    Recovery,
    WaitingInfo,
)
from pow_mcp.store.transfer import all_jobs, export_jobs, import_jobs
from tests.conftest import settings_for
from tests.store_helpers import make_record


def varied_records() -> list[JobRecord]:
    now = utc_now()
    records = [make_record(status, owner="some-instance") for status in JobStatus]
    records[0] = records[0].model_copy(
        update={
            "tags": ["a", "b:c"],
            "batch_id": "batch_1_x",
            "principal": "alice",
            "blocked_by": ["pow_1_dep"],
            "run_after": now + timedelta(minutes=5),
            "keep_until": now + timedelta(hours=1),
        }
    )
    records[2] = records[2].model_copy(
        update={
            "progress": Progress(
                hashes=123, hashrate=4.5, best_zeros=3, best_nonce="77", best_hash="000a" + "b" * 60
            ),
            "checkpoint": Checkpoint(layout=1, position=4096, in_flight=[(1024, 512)]),
            "attempts": [Attempt(started_at=now, ended_at=now, outcome="retried", error="x")],
            "recoveries": [Recovery(at=now, from_status="running", hashes=99)],
            "run_seconds": 12.5,
            "waiting_info": WaitingInfo(current_age=3, current_difficulty=9),
            "valid_from_block": 1042,
        }
    )
    records[4] = records[4].model_copy(
        update={
            "result": JobResult(
                proof_of_work=ProofOfWork(hash="0000ab", nonce="12345", iterations=9, valid=True)
            ),
            "completed_at": now,
        }
    )
    extra = json.loads(records[5].model_dump_json()) | {"future_field": {"k": [1, 2]}}
    records[5] = JobRecord.model_validate(extra)
    return records


def comparable(records: list[JobRecord]) -> dict[str, object]:
    return {r.job_id: json.loads(r.model_dump_json()) for r in records}


async def test_export_import_through_every_store_loses_nothing(
    tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    records = varied_records()
    chain = ["json", "sqlite", "postgresql", "memory", "json"]
    first = await connect(settings_for(chain[0], tmp_path / "0", request))
    await first.create(records)
    expected = comparable(await all_jobs(first))
    assert set(expected) == {r.job_id for r in records}
    file = tmp_path / "0.json"
    assert await export_jobs(first, file) == len(records)
    await first.close()
    for step, kind in enumerate(chain[1:], start=1):
        store = await connect(settings_for(kind, tmp_path / str(step), request))
        try:
            imported = await import_jobs(store, file)
            assert (imported.created, imported.skipped) == (len(records), [])
            assert comparable(await all_jobs(store)) == expected, kind
            again = await import_jobs(store, file)  # importing twice adds nothing
            assert (again.created, len(again.skipped)) == (0, len(records))
            file = tmp_path / f"{step}.json"
            await export_jobs(store, file)
        finally:
            await store.close()
    assert json.loads(file.read_text()) == json.loads((tmp_path / "0.json").read_text())


async def test_a_structs_mcp_file_imports(tmp_path: Path, pg_url: str) -> None:
    legacy = {
        "pow_1704067200000_abc": {
            "job_id": "pow_1704067200000_abc",
            "status": "completed",
            "started_at": "2024-01-01T00:00:00.000Z",
            "completed_at": "2024-01-01T00:00:05.000Z",
            "result": {"proof_of_work": {"hash": "000" + "a" * 61, "nonce": 12345}},
        },
        "pow_1704067300000_def": {"status": "processing", "started_at": 1704067300000},
        "broken": 5,
    }
    file = tmp_path / "jobs.json"
    file.write_text(json.dumps(legacy))
    store = await connect(StoreSettings(tmp_path, database_url=pg_url))
    try:
        result = await import_jobs(store, file)
        assert result.created == 2 and set(result.unreadable) == {"broken"}
        done = await store.get("pow_1704067200000_abc")
        assert done is not None and done.status is JobStatus.COMPLETED
        assert done.result is not None and done.result.proof_of_work is not None
        assert done.result.proof_of_work.nonce == "12345"
        running = await store.get("pow_1704067300000_def")
        assert running is not None and running.status is JobStatus.RUNNING
        assert [r.job_id for r in await store.orphans()] == ["pow_1704067300000_def"]
    finally:
        await store.close()
