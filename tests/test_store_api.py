"""The JobStore contract, checked on both stores (memory and JSON file)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path

import anyio
import pytest

from store import (
    JobExistsError,
    JobNotFoundError,
    JobStatus,
    JobStore,
    Progress,
    StoreClosedError,
    open_store,
    utc_now,
)
from tests.store_helpers import BASE_TIME, finished, make_record

# Each test opens its store itself: a fixture cannot hold open_store's task group, since
# pytest-asyncio sets fixtures up and tears them down in different tasks.
KINDS = pytest.mark.parametrize("kind", ["memory", "file"])


@asynccontextmanager
async def opened(kind: str, tmp_path: Path) -> AsyncIterator[JobStore]:
    async with open_store(tmp_path / "jobs", persist=kind == "file", debounce_seconds=0.05) as s:
        yield s


@KINDS
async def test_create_get_and_owner(kind: str, tmp_path: Path) -> None:
    async with opened(kind, tmp_path) as store:
        record = make_record(owner="someone-else")
        stored = await store.create(record)
        assert stored.owner == store.instance_id
        got = await store.get(record.job_id)
        assert got == stored
        assert await store.get("pow_0_missing") is None
        with pytest.raises(JobExistsError):
            await store.create(make_record(job_id=record.job_id))


@KINDS
async def test_update_replaces_and_keeps_the_owner(kind: str, tmp_path: Path) -> None:
    async with opened(kind, tmp_path) as store:
        record = await store.create(make_record())
        running = record.model_copy(
            update={"status": JobStatus.RUNNING, "owner": None, "progress": Progress(hashes=7)}
        )
        assert await store.update(running) is True
        got = await store.get(record.job_id)
        assert got is not None
        assert got.status is JobStatus.RUNNING and got.progress.hashes == 7
        assert got.owner == store.instance_id
        with pytest.raises(JobNotFoundError):
            await store.update(make_record())


@KINDS
async def test_terminal_is_final(
    kind: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with opened(kind, tmp_path) as store:
        record = await store.create(make_record(JobStatus.RUNNING))
        done = finished(record, JobStatus.CANCELLED)
        assert await store.update(done) is True
        with caplog.at_level(logging.WARNING):
            assert await store.update(record) is False  # running again: ignored
        assert record.job_id in caplog.text and "final" in caplog.text
        assert (await store.get(record.job_id)) == done
        failed = finished(record, JobStatus.FAILED, error="boom")
        assert await store.update(failed) is True  # terminal to terminal applies
        assert await store.get(record.job_id) == failed


@KINDS
async def test_records_are_copies(kind: str, tmp_path: Path) -> None:
    async with opened(kind, tmp_path) as store:
        record = make_record()
        await store.create(record)
        record.job_data["prefix"] = "changed after create"
        got = await store.get(record.job_id)
        assert got is not None and got.job_data["prefix"] != "changed after create"
        got.progress.hashes = 123
        got.status = JobStatus.COMPLETED  # in place, without update(): must change nothing
        again = await store.get(record.job_id)
        assert again is not None and again.progress.hashes == 0 and again.status is JobStatus.QUEUED


@KINDS
async def test_list_is_newest_first_filtered_and_paged(kind: str, tmp_path: Path) -> None:
    async with opened(kind, tmp_path) as store:
        created = []
        for n in range(12):
            status = [JobStatus.QUEUED, JobStatus.RUNNING, JobStatus.COMPLETED][n % 3]
            record = make_record(status, created=BASE_TIME + timedelta(minutes=n))
            created.append(await store.create(record))
        newest_first = [r.job_id for r in reversed(created)]
        page, total = await store.list()
        assert total == 12 and [r.job_id for r in page] == newest_first
        page, total = await store.list(limit=5, offset=5)
        assert total == 12 and [r.job_id for r in page] == newest_first[5:10]
        page, total = await store.list(status=JobStatus.RUNNING, limit=2)
        running = [r.job_id for r in reversed(created) if r.status is JobStatus.RUNNING]
        assert total == 4 and [r.job_id for r in page] == running[:2]
        page, total = await store.list(status=JobStatus.FAILED)
        assert (page, total) == ([], 0)
        page, total = await store.list(offset=100)
        assert (page, total) == ([], 12)
        with pytest.raises(ValueError, match="limit"):
            await store.list(limit=-1)


@KINDS
async def test_cleanup_removes_only_old_terminal_jobs(kind: str, tmp_path: Path) -> None:
    async with opened(kind, tmp_path) as store:
        now = utc_now()
        hour = timedelta(hours=1)
        old_done = await store.create(make_record(JobStatus.RUNNING))
        await store.update(finished(old_done, completed_at=now - 2 * hour))
        new_done = await store.create(make_record(JobStatus.RUNNING))
        await store.update(finished(new_done, completed_at=now - hour / 2))
        old_running = await store.create(make_record(JobStatus.RUNNING, created=now - 5 * hour))
        old_queued = await store.create(make_record(JobStatus.QUEUED, created=now - 5 * hour))
        old_waiting = await store.create(make_record(JobStatus.WAITING, created=now - 5 * hour))
        # A terminal record without completed_at is aged by updated_at.
        no_completed = make_record(JobStatus.FAILED, created=now - 3 * hour)
        await store.create(no_completed)

        removed = await store.delete_terminal_older_than(3600, now=now)
        assert sorted(removed) == sorted([old_done.job_id, no_completed.job_id])
        assert await store.get(old_done.job_id) is None
        for kept in (new_done, old_running, old_queued, old_waiting):
            assert await store.get(kept.job_id) is not None
        assert await store.delete_terminal_older_than(3600, now=now) == []
        assert await store.delete_terminal_older_than(0) == [new_done.job_id]
        _, total = await store.list()
        assert total == 3


@KINDS
async def test_run_cleanup_applies_the_retention(kind: str, tmp_path: Path) -> None:
    async with opened(kind, tmp_path) as store:
        old = await store.create(make_record(JobStatus.RUNNING))
        await store.update(finished(old, completed_at=utc_now() - timedelta(hours=2)))
        active = await store.create(make_record(JobStatus.RUNNING, created=BASE_TIME))
        async with anyio.create_task_group() as tg:
            tg.start_soon(store.run_cleanup, 3600, 0.01)
            with anyio.fail_after(10):
                while await store.get(old.job_id) is not None:  # noqa: ASYNC110
                    await anyio.sleep(0.01)  # the record's removal is the event
            tg.cancel_scope.cancel()
        assert await store.get(active.job_id) is not None


@KINDS
async def test_close_is_idempotent_and_final(kind: str, tmp_path: Path) -> None:
    async with opened(kind, tmp_path) as store:
        await store.create(make_record())
        await store.close()
        await store.close()
        with pytest.raises(StoreClosedError):
            await store.create(make_record())
        with pytest.raises(StoreClosedError):
            await store.get("x")
