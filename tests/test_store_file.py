"""The JSON file store: atomic files, group commit, visibility, damage, foreign files."""

from __future__ import annotations

import json
import logging
import os
import stat
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest
from anyio import wait_all_tasks_blocked

import pow_mcp.store.jsonfile.datadir as datadir
from pow_mcp.store import (
    DataDirError,
    JobQuery,
    JobStatus,
    JobStore,
    StoreSettings,
    StoreWriteError,
    connect,
    open_store,
)
from pow_mcp.store.jsonfile.file import write_atomic
from tests.store_helpers import aside, holding_write_lock, make_record, raw_jobs


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def json_settings(data_dir: Path) -> StoreSettings:
    return StoreSettings(data_dir)


@pytest.fixture
def file_writes(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts the store's file writes (the real writes still happen)."""
    writes: list[int] = []

    def counted(*args: Any, **kwargs: Any) -> Any:
        writes.append(1)
        return write_atomic(*args, **kwargs)

    monkeypatch.setattr(datadir, "write_atomic", counted)
    return writes


# -- durability and visibility --------------------------------------------------------------


async def test_every_operation_is_on_disk_when_it_returns(tmp_path: Path) -> None:
    async with open_store(json_settings(tmp_path)) as store:
        record = make_record(owner=store.instance_id)
        await store.create([record])
        assert raw_jobs(tmp_path)[record.job_id]["status"] == "queued"
        running = record.model_copy(update={"status": JobStatus.RUNNING})
        await store.claim(running)
        assert raw_jobs(tmp_path)[record.job_id]["status"] == "running"
        await store.cancel(record.job_id)
        assert raw_jobs(tmp_path)[record.job_id]["status"] == "cancelled"


@asynccontextmanager
async def quiet_store(data_dir: Path) -> AsyncIterator[JobStore]:
    """A JSON store without its background watcher: nothing else runs in the test's event
    loop, so wait_all_tasks_blocked() means "the store's operations are all waiting"."""
    store = await connect(json_settings(data_dir))
    try:
        yield store
    finally:
        await store.close()


async def test_concurrent_operations_share_one_write(
    tmp_path: Path, file_writes: list[int]
) -> None:
    async with quiet_store(tmp_path) as store:
        first = make_record(owner=store.instance_id)
        others = [make_record(owner=store.instance_id) for _ in range(50)]
        before = len(file_writes)
        async with anyio.create_task_group() as tg:
            with holding_write_lock(tmp_path):  # a write is in progress (another process)
                tg.start_soon(store.create, [first])
                await wait_all_tasks_blocked()  # its write waits for our lock
                for record in others:
                    tg.start_soon(store.create, [record])
                await wait_all_tasks_blocked()
                assert len(file_writes) == before
        # The first write, then one for all fifty that arrived while it was waiting.
        assert len(file_writes) == before + 2
        assert set(raw_jobs(tmp_path)) == {r.job_id for r in [first, *others]}


async def test_nothing_shows_before_it_is_durable(tmp_path: Path) -> None:
    async with quiet_store(tmp_path) as store:
        running = make_record(JobStatus.RUNNING, owner=store.instance_id)
        await store.create([running])
        new = make_record(owner=store.instance_id)
        async with anyio.create_task_group() as tg:
            with holding_write_lock(tmp_path):
                tg.start_soon(store.create, [new])
                tg.start_soon(store.cancel, running.job_id)
                await wait_all_tasks_blocked()
                assert await store.get(new.job_id) is None
                page, total = await store.find(JobQuery())
                assert [r.job_id for r in page] == [running.job_id] and total == 1
                assert page[0].status is JobStatus.RUNNING
        assert await store.get(new.job_id) is not None
        done = await store.get(running.job_id)
        assert done is not None and done.status is JobStatus.CANCELLED


async def test_a_failed_write_leaves_no_trace(tmp_path: Path) -> None:
    async with open_store(json_settings(tmp_path)) as store:
        kept = make_record(JobStatus.COMPLETED, owner=store.instance_id)
        await store.create([kept])
        jobs = tmp_path / "jobs.json"
        jobs.unlink()
        jobs.mkdir()  # now no file can be renamed over it
        new = make_record(owner=store.instance_id)
        with pytest.raises(StoreWriteError, match=r"jobs\.json"):
            await store.create([new])
        with pytest.raises(StoreWriteError):
            await store.delete_finished(0)
        jobs.rmdir()
        await store.create([make_record(owner=store.instance_id)])  # the next write works
        # ...and carries nothing of the failed ones: the refused start and cleanup stay undone.
        saved = raw_jobs(tmp_path)
        assert new.job_id not in saved and kept.job_id in saved
        assert await store.get(new.job_id) is None


# -- the files ------------------------------------------------------------------------------


async def test_backup_is_the_previous_generation(tmp_path: Path) -> None:
    async with open_store(json_settings(tmp_path)) as store:
        await store.create([make_record()])
        before = (tmp_path / "jobs.json").read_bytes()
        await store.create([make_record()])
        assert (tmp_path / "jobs.json.bak").read_bytes() == before
        assert (tmp_path / "jobs.json").read_bytes() != before


async def test_file_layout_and_timestamps(tmp_path: Path) -> None:
    async with open_store(json_settings(tmp_path)) as store:
        a, b = make_record(), make_record()
        await store.create([a])
        await store.create([b])
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
    async with open_store(json_settings(data_dir)) as store:
        await store.create([make_record()])
        await store.create([make_record()])
        assert mode(data_dir / "instances" / f"{store.instance_id}.lock") == 0o600
    for directory in (tmp_path / "a", data_dir, data_dir / "instances"):
        assert mode(directory) == 0o700, directory
    for name in ("jobs.json", "jobs.json.bak", "jobs.json.lock"):
        assert mode(data_dir / name) == 0o600, name


async def test_memory_store_writes_nothing(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    for data_dir in (tmp_path / "missing", empty):
        async with open_store(StoreSettings(data_dir, persist=False)) as store:
            record = make_record(JobStatus.RUNNING, owner=store.instance_id)
            await store.create([record])
            await store.finish(record.model_copy(update={"status": JobStatus.COMPLETED}))
            assert await store.delete_finished(0) == [record.job_id]
    assert not (tmp_path / "missing").exists()
    assert list(empty.iterdir()) == []


@pytest.mark.parametrize("where", ["under-a-file", "is-a-file"])
async def test_an_unusable_data_dir_is_a_clear_error(tmp_path: Path, where: str) -> None:
    blocker = tmp_path / "blocker"
    blocker.write_text("not a directory")
    data_dir = blocker / "jobs" if where == "under-a-file" else blocker
    with pytest.raises(DataDirError) as caught:
        async with open_store(json_settings(data_dir)):
            pass  # pragma: no cover
    message = str(caught.value)
    assert str(data_dir) in message
    assert "JOBS_DATA_DIR" in message and "PERSIST_JOBS=false" in message
    assert blocker.read_text() == "not a directory"


async def test_stale_temp_files_are_removed_on_open(tmp_path: Path) -> None:
    async with open_store(json_settings(tmp_path)) as store:
        await store.create([make_record()])
    stale = tmp_path / "jobs.json.tmp-123-abc"
    stale.write_text('{"half": ')
    async with open_store(json_settings(tmp_path)):
        assert not stale.exists()


async def test_another_processs_write_is_noticed(tmp_path: Path) -> None:
    async with open_store(json_settings(tmp_path)) as a, open_store(json_settings(tmp_path)) as b:
        record = make_record(JobStatus.RUNNING, owner=a.instance_id)
        with anyio.fail_after(5):
            async with anyio.create_task_group() as tg:
                waiting = anyio.Event()

                async def wait() -> None:
                    change = b.wait_for_change()
                    waiting.set()
                    await change

                tg.start_soon(wait)
                await waiting.wait()
                await a.create([record])
        seen = await b.get(record.job_id)
        assert seen is not None


# -- loading ---------------------------------------------------------------------------------


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
    async with open_store(json_settings(tmp_path)) as store:
        page, total = await store.find(JobQuery())
        assert total == 4
        assert [r.job_id for r in page] == sorted(legacy, reverse=True)
        done = await store.get("pow_1704067200000_abc")
        assert done is not None and done.status is JobStatus.COMPLETED
        assert done.result is not None and done.result.proof_of_work is not None
        assert done.result.proof_of_work.nonce == "12345"
        was_running = await store.get("pow_1704067300000_def")
        assert was_running is not None and was_running.status is JobStatus.RUNNING
        assert (was_running.model_extra or {})["legacy_status"] == "processing"
        failed = await store.get("pow_1704067400000_ghi")
        assert failed is not None and failed.error == "Max iterations reached"
        # Nobody runs the unfinished ones: the job manager's recovery policy applies to them.
        orphans = {r.job_id for r in await store.orphans()}
        assert orphans == {"pow_1704067300000_def", "pow_1704067500000_jkl"}
        await store.create([make_record()])  # rewrites the whole file
    saved = raw_jobs(tmp_path)
    assert saved["pow_1704067500000_jkl"]["waiting_info"]["target_age"] == 10
    assert saved["pow_1704067500000_jkl"]["difficulty_info"]["target_difficulty"] == 5
    assert saved["pow_1704067400000_ghi"]["result"]["errors"][0]["iteration"] == 5
    assert json.loads((tmp_path / "jobs.json.bak").read_text()) == legacy  # the original
    assert (tmp_path / "jobs.json.tmp").read_text() == "{}"


async def test_unknown_fields_and_newer_records_survive_load_and_save(tmp_path: Path) -> None:
    record = json.loads(make_record(JobStatus.RUNNING, owner="me").model_dump_json())
    record |= {"client_tag": {"x": [1, 2]}}
    record["progress"]["gpu_hashes"] = 5
    record["job_data"]["nested"] = {"deep": True}
    future = {"job_id": "pow_9_future", "status": "archived", "what": ["is", {"this": 1}]}
    (tmp_path / "jobs.json").write_text(
        json.dumps({record["job_id"]: record, "pow_9_future": future})
    )
    async with open_store(StoreSettings(tmp_path, instance_id="me")) as store:
        loaded = await store.get(record["job_id"])
        assert loaded is not None
        await store.finish(loaded.model_copy(update={"status": JobStatus.FAILED, "error": "x"}))
        await store.create([make_record()])  # rewrites the whole file
        assert await store.delete_finished(0) == [record["job_id"]]  # not the newer record
    saved = raw_jobs(tmp_path)
    assert saved["pow_9_future"] == future  # kept as it is, not turned into a failure
    await _reopened_keeps(tmp_path, future)


async def _reopened_keeps(tmp_path: Path, future: dict[str, Any]) -> None:
    async with open_store(json_settings(tmp_path)) as store:
        _, total = await store.find(JobQuery())
        assert total == 1  # the newer record is not a job this version lists
        await store.create([make_record()])
    assert raw_jobs(tmp_path)["pow_9_future"] == future


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
    async with open_store(json_settings(data_dir)) as store:
        first = make_record(JobStatus.COMPLETED)
        await store.create([first])
        await store.create([make_record(JobStatus.COMPLETED)])
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
        async with open_store(json_settings(tmp_path)) as store:
            page, _ = await store.find(JobQuery())
            assert [r.job_id for r in page] == (backup_ids if with_backup else [])
    kept = aside(tmp_path)
    assert len(kept) == 1 and kept[0].read_bytes() == damaged
    assert kept[0].name in caplog.text
    assert set(raw_jobs(tmp_path)) == set(backup_ids if with_backup else [])


async def test_a_corrupt_backup_is_set_aside_too(tmp_path: Path) -> None:
    await _two_generations(tmp_path)
    (tmp_path / "jobs.json").write_bytes(b"{broken")
    (tmp_path / "jobs.json.bak").write_bytes(b"also broken")
    async with open_store(json_settings(tmp_path)) as store:
        assert await store.find(JobQuery()) == ([], 0)
        await store.create([make_record()])
        await store.create([make_record()])  # rotates the backup
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
        async with open_store(json_settings(tmp_path)) as store:
            page, _ = await store.find(JobQuery())
            assert [r.job_id for r in page] == [good["job_id"]]
    assert "bad-one" in caplog.text and "bad-two" in caplog.text
    assert [p.read_text() for p in aside(tmp_path)] == [original]
    assert set(raw_jobs(tmp_path)) == {good["job_id"]}


async def test_damage_while_running_is_repaired_without_loss(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with open_store(json_settings(tmp_path)) as store:
        records = [make_record(JobStatus.COMPLETED) for _ in range(3)]
        for record in records:
            await store.create([record])
        ids = {r.job_id for r in records}
        (tmp_path / "jobs.json").write_bytes(b"\x00" * 100)  # something else clobbered it
        with caplog.at_level(logging.WARNING):
            _, total = await store.find(JobQuery())
        assert total == 3
        assert [p.read_bytes() for p in aside(tmp_path)] == [b"\x00" * 100]
        assert set(raw_jobs(tmp_path)) == ids
        (tmp_path / "jobs.json").unlink()  # and now someone removed it
        new = make_record()
        await store.create([new])
        assert set(raw_jobs(tmp_path)) == {*ids, new.job_id}
