"""The JSON file store: durability points, debounce, group commit, atomic files, recovery."""

from __future__ import annotations

import json
import logging
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest
from anyio import wait_all_tasks_blocked

from store import (
    INTERRUPTED_ERROR,
    DataDirError,
    JobStatus,
    JsonFileJobStore,
    Progress,
    StoreWriteError,
    open_store,
)
from tests.store_helpers import (
    aside,
    finished,
    holding_write_lock,
    make_record,
    raw_jobs,
    wait_for_writes,
)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# -- durability and visibility --------------------------------------------------------------


async def test_create_and_terminal_moves_are_on_disk_on_return(tmp_path: Path) -> None:
    async with open_store(tmp_path, persist=True, debounce_seconds=60) as store:
        record = await store.create(make_record())
        assert raw_jobs(tmp_path)[record.job_id]["status"] == "queued"
        running = record.model_copy(update={"status": JobStatus.RUNNING})
        await store.update(running)
        assert raw_jobs(tmp_path)[record.job_id]["status"] == "queued"  # debounced, 60 s away
        await store.update(finished(running))
        assert raw_jobs(tmp_path)[record.job_id]["status"] == "completed"


async def test_progress_is_visible_at_once_and_written_by_flush(tmp_path: Path) -> None:
    async with open_store(tmp_path, persist=True, debounce_seconds=60) as store:
        record = await store.create(make_record(JobStatus.RUNNING))
        writes = store.writes
        await store.update(record.model_copy(update={"progress": Progress(hashes=42)}))
        got = await store.get(record.job_id)
        assert got is not None and got.progress.hashes == 42
        assert raw_jobs(tmp_path)[record.job_id]["progress"]["hashes"] == 0
        assert store.writes == writes
        await store.flush()
        assert raw_jobs(tmp_path)[record.job_id]["progress"]["hashes"] == 42
        assert store.writes == writes + 1
        await store.flush()  # nothing pending: no write
        assert store.writes == writes + 1


async def test_a_burst_of_updates_is_one_debounced_write(tmp_path: Path) -> None:
    async with open_store(tmp_path, persist=True, debounce_seconds=0.3) as store:
        record = await store.create(make_record(JobStatus.RUNNING))
        writes = store.writes
        for hashes in range(1, 201):
            await store.update(record.model_copy(update={"progress": Progress(hashes=hashes)}))
        await wait_for_writes(store, writes + 1)
        assert raw_jobs(tmp_path)[record.job_id]["progress"]["hashes"] == 200
        await store.flush()
        assert store.writes == writes + 1


async def test_durable_calls_do_not_wait_out_the_debounce(tmp_path: Path) -> None:
    async with open_store(tmp_path, persist=True, debounce_seconds=3600) as store:
        with anyio.fail_after(5):  # an hour-long window must not delay these
            record = await store.create(make_record(JobStatus.RUNNING))
            await store.update(record.model_copy(update={"progress": Progress(hashes=5)}))
            await store.update(finished(record))
        assert raw_jobs(tmp_path)[record.job_id]["status"] == "completed"


async def test_a_close_flushes_pending_progress(tmp_path: Path) -> None:
    async with open_store(tmp_path, persist=True, debounce_seconds=3600) as store:
        record = await store.create(make_record(JobStatus.RUNNING))
        await store.update(record.model_copy(update={"progress": Progress(hashes=99)}))
    assert raw_jobs(tmp_path)[record.job_id]["progress"]["hashes"] == 99


async def test_concurrent_durable_calls_share_one_write(tmp_path: Path) -> None:
    async with open_store(tmp_path, persist=True, debounce_seconds=3600) as store:
        first = make_record()
        others = [make_record() for _ in range(50)]
        writes = store.writes
        async with anyio.create_task_group() as tg:
            with holding_write_lock(tmp_path):  # a write is in progress (another process)
                tg.start_soon(store.create, first)
                await wait_all_tasks_blocked()  # its write waits for our lock
                for record in others:
                    tg.start_soon(store.create, record)
                await wait_all_tasks_blocked()
                assert store.writes == writes
        # The first write, then one for all fifty that arrived while it was waiting.
        assert store.writes == writes + 2
        assert set(raw_jobs(tmp_path)) == {r.job_id for r in [first, *others]}


async def test_nothing_shows_before_it_is_durable(tmp_path: Path) -> None:
    async with open_store(tmp_path, persist=True, debounce_seconds=3600) as store:
        running = await store.create(make_record(JobStatus.RUNNING))
        await store.update(running.model_copy(update={"progress": Progress(hashes=3)}))
        new = make_record()
        async with anyio.create_task_group() as tg:
            with holding_write_lock(tmp_path):
                tg.start_soon(store.create, new)
                tg.start_soon(store.update, finished(running))
                await wait_all_tasks_blocked()
                assert await store.get(new.job_id) is None
                page, total = await store.list()
                assert [r.job_id for r in page] == [running.job_id] and total == 1
                shown = await store.get(running.job_id)
                assert shown is not None
                assert shown.status is JobStatus.RUNNING and shown.progress.hashes == 3
        assert await store.get(new.job_id) is not None
        done = await store.get(running.job_id)
        assert done is not None and done.status is JobStatus.COMPLETED


async def test_progress_on_a_job_still_being_created_waits_for_it(tmp_path: Path) -> None:
    async with open_store(tmp_path, persist=True, debounce_seconds=3600) as store:
        record = make_record(JobStatus.RUNNING)
        async with anyio.create_task_group() as tg:
            with holding_write_lock(tmp_path):
                tg.start_soon(store.create, record)
                await wait_all_tasks_blocked()
                progressed = record.model_copy(update={"progress": Progress(hashes=8)})
                assert await store.update(progressed) is True  # returns at once
                assert await store.get(record.job_id) is None
        shown = await store.get(record.job_id)
        assert shown is not None and shown.progress.hashes == 8
        assert raw_jobs(tmp_path)[record.job_id]["progress"]["hashes"] == 0
        await store.flush()
        assert raw_jobs(tmp_path)[record.job_id]["progress"]["hashes"] == 8


# -- the files ------------------------------------------------------------------------------


async def test_backup_is_the_previous_generation(tmp_path: Path) -> None:
    async with open_store(tmp_path, persist=True) as store:
        await store.create(make_record())
        before = (tmp_path / "jobs.json").read_bytes()
        await store.create(make_record())
        assert (tmp_path / "jobs.json.bak").read_bytes() == before
        assert (tmp_path / "jobs.json").read_bytes() != before


async def test_file_layout_and_timestamps(tmp_path: Path) -> None:
    async with open_store(tmp_path, persist=True) as store:
        a = await store.create(make_record())
        b = await store.create(make_record())
    text = (tmp_path / "jobs.json").read_text()
    lines = text.splitlines()
    assert lines[0] == "{" and lines[-1] == "}" and len(lines) == 4  # one record per line
    data = json.loads(text)
    assert list(data) == [a.job_id, b.job_id]
    assert data[a.job_id]["created_at"].endswith("Z")


@pytest.fixture
def umask_zero() -> Iterator[None]:
    old = os.umask(0)  # the store must not rely on the umask for private modes
    try:
        yield
    finally:
        os.umask(old)


@pytest.mark.usefixtures("umask_zero")
async def test_private_permissions(tmp_path: Path) -> None:
    data_dir = tmp_path / "a" / "b"
    async with open_store(data_dir, persist=True) as store:
        await store.create(make_record())
        await store.create(make_record())
        assert mode(data_dir / "instances" / f"{store.instance_id}.lock") == 0o600
    for directory in (tmp_path / "a", data_dir, data_dir / "instances"):
        assert mode(directory) == 0o700, directory
    for name in ("jobs.json", "jobs.json.bak", "jobs.json.lock"):
        assert mode(data_dir / name) == 0o600, name


async def test_memory_store_writes_nothing(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    for data_dir in (tmp_path / "missing", empty):
        async with open_store(data_dir, persist=False) as store:
            record = await store.create(make_record())
            await store.update(finished(record))
            await store.flush()
            assert await store.delete_terminal_older_than(0) == [record.job_id]
            assert store.writes == 0
    assert not (tmp_path / "missing").exists()
    assert list(empty.iterdir()) == []


@pytest.mark.parametrize("where", ["under-a-file", "is-a-file"])
async def test_an_unusable_data_dir_is_a_clear_error(tmp_path: Path, where: str) -> None:
    blocker = tmp_path / "blocker"
    blocker.write_text("not a directory")
    data_dir = blocker / "jobs" if where == "under-a-file" else blocker
    with pytest.raises(DataDirError) as caught:
        async with open_store(data_dir, persist=True):
            pass  # pragma: no cover
    message = str(caught.value)
    assert str(data_dir) in message
    assert "JOBS_DATA_DIR" in message and "PERSIST_JOBS=false" in message
    assert blocker.read_text() == "not a directory"


async def test_stale_temp_files_are_removed_on_open(tmp_path: Path) -> None:
    async with open_store(tmp_path, persist=True) as store:
        await store.create(make_record())
    stale = tmp_path / "jobs.json.tmp-123-abc"
    stale.write_text('{"half": ')
    async with open_store(tmp_path, persist=True):
        assert not stale.exists()


async def test_a_failed_write_raises_and_is_retried(tmp_path: Path) -> None:
    async with open_store(tmp_path, persist=True, debounce_seconds=3600) as store:
        kept = await store.create(make_record())
        jobs = tmp_path / "jobs.json"
        jobs.unlink()
        jobs.mkdir()  # now no file can be renamed over it
        new = make_record()
        with pytest.raises(StoreWriteError, match=r"jobs\.json"):
            await store.create(new)
        assert await store.get(new.job_id) is None  # not durable: not shown
        jobs.rmdir()
        await store.flush()  # the failed change is still pending and goes out now
        assert await store.get(new.job_id) is not None
        assert set(raw_jobs(tmp_path)) == {kept.job_id, new.job_id}


# -- loading ---------------------------------------------------------------------------------


async def test_unfinished_jobs_of_a_stopped_server_are_interrupted(tmp_path: Path) -> None:
    async with open_store(tmp_path, persist=True, debounce_seconds=3600) as store:
        records = {}
        for status in JobStatus:
            records[status] = await store.create(make_record(status))
    async with open_store(tmp_path, persist=True) as store:
        for status, record in records.items():
            got = await store.get(record.job_id)
            assert got is not None
            if status in (JobStatus.QUEUED, JobStatus.WAITING, JobStatus.RUNNING):
                assert got.status is JobStatus.FAILED and got.error == INTERRUPTED_ERROR
                assert got.completed_at is not None
            else:
                assert got == record
    # ... and that change was persisted.
    assert raw_jobs(tmp_path)[records[JobStatus.RUNNING].job_id]["error"] == INTERRUPTED_ERROR


async def test_a_structs_mcp_file_loads_as_history(tmp_path: Path) -> None:
    legacy = {
        "pow_1704067200000_abc": {
            "job_id": "pow_1704067200000_abc",
            "status": "completed",
            "started_at": "2024-01-01T00:00:00.000Z",
            "completed_at": "2024-01-01T00:00:05.000Z",
            "result": {
                "proof_of_work": {
                    "hash": "000" + "a" * 61,
                    "nonce": "12345",
                    "iterations": 12346,
                    "valid": True,
                }
            },
            "error": None,
        },
        "pow_1704067300000_def": {
            "job_id": "pow_1704067300000_def",
            "status": "processing",
            "started_at": 1704067300000,
            "completed_at": None,
            "result": None,
            "error": None,
        },
        "pow_1704067400000_ghi": {
            "job_id": "pow_1704067400000_ghi",
            "status": "failed",
            "started_at": 1704067400,
            "completed_at": 1704067401,
            "result": {"errors": [{"message": "x", "iteration": 5}]},
            "error": "Max iterations reached",
        },
        "pow_1704067500000_jkl": {
            "job_id": "pow_1704067500000_jkl",
            "status": "waiting",
            "started_at": "2024-01-01T00:05:00.000Z",
            "waiting_info": {"current_age": 3, "target_age": 10, "blocks_remaining": 7},
            "job_data": {"action_type": "ore_miner_complete", "entity_id": "5-1", "difficulty": 9},
            "difficulty_info": {"current_difficulty": 20, "target_difficulty": 5},
        },
    }
    (tmp_path / "jobs.json").write_text(json.dumps(legacy, indent=2))
    (tmp_path / "jobs.json.tmp").write_text("{}")  # structs-mcp's own temp name: not ours
    async with open_store(tmp_path, persist=True) as store:
        page, total = await store.list()
        assert total == 4
        assert [r.job_id for r in page] == sorted(legacy, reverse=True)
        done = await store.get("pow_1704067200000_abc")
        assert done is not None and done.status is JobStatus.COMPLETED
        assert done.result is not None and done.result.proof_of_work is not None
        assert done.result.proof_of_work.nonce == "12345"
        was_running = await store.get("pow_1704067300000_def")
        assert was_running is not None and was_running.status is JobStatus.FAILED
        assert was_running.error == INTERRUPTED_ERROR
        assert (was_running.model_extra or {})["legacy_status"] == "processing"
        failed = await store.get("pow_1704067400000_ghi")
        assert failed is not None and failed.error == "Max iterations reached"
        waited = await store.get("pow_1704067500000_jkl")
        assert waited is not None and waited.error == INTERRUPTED_ERROR
        assert waited.waiting_info is not None and waited.waiting_info.blocks_remaining == 7
    saved = raw_jobs(tmp_path)
    assert saved["pow_1704067500000_jkl"]["waiting_info"]["target_age"] == 10
    assert saved["pow_1704067500000_jkl"]["difficulty_info"]["target_difficulty"] == 5
    assert saved["pow_1704067400000_ghi"]["result"]["errors"][0]["iteration"] == 5
    assert json.loads((tmp_path / "jobs.json.bak").read_text()) == legacy  # the original
    assert (tmp_path / "jobs.json.tmp").read_text() == "{}"


async def test_unknown_fields_survive_load_and_save(tmp_path: Path) -> None:
    record = json.loads(make_record(JobStatus.COMPLETED).model_dump_json())
    record |= {"client_tag": {"x": [1, 2]}, "owner": None}
    record["progress"]["gpu_hashes"] = 5
    record["job_data"]["nested"] = {"deep": True}
    untouched = json.loads(make_record(JobStatus.FAILED).model_dump_json())
    untouched["other_server_field"] = "kept"
    (tmp_path / "jobs.json").write_text(
        json.dumps({record["job_id"]: record, untouched["job_id"]: untouched})
    )
    async with open_store(tmp_path, persist=True) as store:
        loaded = await store.get(record["job_id"])
        assert loaded is not None
        await store.update(loaded.model_copy(update={"error": "touched"}))
        await store.create(make_record())  # rewrites the whole file
    saved = raw_jobs(tmp_path)
    assert saved[record["job_id"]]["client_tag"] == {"x": [1, 2]}
    assert saved[record["job_id"]]["progress"]["gpu_hashes"] == 5
    assert saved[record["job_id"]]["job_data"]["nested"] == {"deep": True}
    assert saved[record["job_id"]]["error"] == "touched"
    assert saved[untouched["job_id"]]["other_server_field"] == "kept"


CORRUPT = {
    "truncated": None,  # the real file cut in half
    "garbage": b"\x00\xff\xfe not json at all",
    "empty": b"",
    "json-list": b'[{"job_id": "x", "status": "queued"}]',
    "json-string": b'"jobs"',
    "not-records": b'{"a": 1, "b": "two", "c": [3]}',
    "records-without-status": b'{"a": {"job_id": "a"}, "b": {"job_id": "b"}}',
}


async def _two_generations(data_dir: Path) -> tuple[list[str], bytes]:
    """Write two generations; return the ids in the first (the backup) and the last file."""
    async with open_store(data_dir, persist=True) as store:
        first = await store.create(make_record(JobStatus.COMPLETED))
        await store.create(make_record(JobStatus.COMPLETED))
    return [first.job_id], (data_dir / "jobs.json").read_bytes()


@pytest.mark.parametrize("kind", list(CORRUPT))
@pytest.mark.parametrize("with_backup", [True, False], ids=["backup", "no-backup"])
async def test_a_corrupt_file_is_set_aside_never_overwritten(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, kind: str, with_backup: bool
) -> None:
    backup_ids, last = await _two_generations(tmp_path)
    if not with_backup:
        (tmp_path / "jobs.json.bak").unlink()
    damaged = CORRUPT[kind] or last[: len(last) // 2]
    (tmp_path / "jobs.json").write_bytes(damaged)
    with caplog.at_level(logging.WARNING):
        async with open_store(tmp_path, persist=True) as store:
            page, _ = await store.list()
            assert [r.job_id for r in page] == (backup_ids if with_backup else [])
    kept = aside(tmp_path)
    assert len(kept) == 1 and kept[0].read_bytes() == damaged
    assert kept[0].name in caplog.text
    assert set(raw_jobs(tmp_path)) == set(backup_ids if with_backup else [])


async def test_a_corrupt_backup_is_set_aside_too(tmp_path: Path) -> None:
    await _two_generations(tmp_path)
    (tmp_path / "jobs.json").write_bytes(b"{broken")
    (tmp_path / "jobs.json.bak").write_bytes(b"also broken")
    async with open_store(tmp_path, persist=True) as store:
        assert await store.list() == ([], 0)
        await store.create(make_record())
        await store.create(make_record())  # rotates the backup
    assert [p.read_bytes() for p in aside(tmp_path, "jobs.json.bak.corrupt-*")] == [b"also broken"]
    assert [p.read_bytes() for p in aside(tmp_path)] == [b"{broken"]


async def test_bad_records_are_skipped_and_the_file_kept(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    good = json.loads(make_record(JobStatus.COMPLETED).model_dump_json())
    bad_two = {"status": "queued", "created_at": "soon"}
    original = json.dumps({good["job_id"]: good, "bad-one": 5, "bad-two": bad_two})
    (tmp_path / "jobs.json").write_text(original)
    with caplog.at_level(logging.WARNING):
        async with open_store(tmp_path, persist=True) as store:
            page, _ = await store.list()
            assert [r.job_id for r in page] == [good["job_id"]]
    assert "bad-one" in caplog.text and "bad-two" in caplog.text
    assert [p.read_text() for p in aside(tmp_path)] == [original]
    assert set(raw_jobs(tmp_path)) == {good["job_id"]}


async def test_damage_while_running_is_repaired_without_loss(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with open_store(tmp_path, persist=True) as store:
        ids = [(await store.create(make_record(JobStatus.COMPLETED))).job_id for _ in range(3)]
        (tmp_path / "jobs.json").write_bytes(b"\x00" * 100)  # something else clobbered it
        with caplog.at_level(logging.WARNING):
            _, total = await store.list()
        assert total == 3
        assert [p.read_bytes() for p in aside(tmp_path)] == [b"\x00" * 100]
        assert set(raw_jobs(tmp_path)) == set(ids)
        (tmp_path / "jobs.json").unlink()  # and now someone removed it
        new = await store.create(make_record())
        assert set(raw_jobs(tmp_path)) == {*ids, new.job_id}


async def test_open_and_close_without_the_context_manager(tmp_path: Path) -> None:
    store = await JsonFileJobStore.open(tmp_path, debounce_seconds=0)
    record = await store.create(make_record(JobStatus.RUNNING))
    await store.update(record.model_copy(update={"progress": Progress(hashes=1)}))
    await store.close()
    await store.close()
    assert raw_jobs(tmp_path)[record.job_id]["progress"]["hashes"] == 1
    assert not (tmp_path / "instances" / f"{store.instance_id}.lock").exists()
