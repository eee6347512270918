"""One contract, four stores: memory, the JSON file, SQLite and a real PostgreSQL server.

Every test here runs on each backend it applies to (memory has no durability and no other
processes). Backend-specific behaviour lives in test_store_file.py and test_store_sql.py.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta

import anyio
import pytest

from pow_mcp.store import (
    JobExistsError,
    JobNotFoundError,
    JobQuery,
    JobRecord,
    JobStatus,
    JobStore,
    Progress,
    StoreClosedError,
    StoreSettings,
    open_store,
    utc_now,
)
from pow_mcp.store.record import ANY_INSTANCE, Checkpoint, Recovery
from tests.conftest import PERSISTENT_KINDS, STORE_KINDS
from tests.store_helpers import BASE_TIME, make_record

ALL = pytest.mark.parametrize("kind", STORE_KINDS, indirect=True)
PERSISTENT = pytest.mark.parametrize("kind", PERSISTENT_KINDS, indirect=True)
DATABASES = pytest.mark.parametrize("kind", ["sqlite", "postgresql"], indirect=True)


@asynccontextmanager
async def opened(settings: StoreSettings, **changes: object) -> AsyncIterator[JobStore]:
    # Each test opens its store itself: a fixture cannot hold open_store's task group, since
    # pytest-asyncio sets fixtures up and tears them down in different tasks.
    fields = {**settings.__dict__, **changes}
    async with open_store(StoreSettings(**fields)) as store:  # type: ignore[arg-type]
        yield store


def mine(store: JobStore, status: JobStatus = JobStatus.QUEUED, **fields: object) -> JobRecord:
    return make_record(status, owner=store.instance_id, **fields)


async def stored(store: JobStore, job_id: str) -> JobRecord:
    record = await store.get(job_id)
    assert record is not None
    return record


# -- creating and reading --------------------------------------------------------------------


@ALL
async def test_create_and_get_give_independent_copies(store_settings: StoreSettings) -> None:
    async with opened(store_settings) as store:
        record = mine(
            store, tags=["a", "b"], batch_id="batch_1_x", task_id="batch_1_x", principal="alice"
        )
        await store.create([record])
        got = await stored(store, record.job_id)
        assert got.model_dump() == record.model_dump()
        record.job_data["prefix"] = "changed after create"
        got.progress.hashes = 123
        again = await stored(store, record.job_id)
        assert again.job_data["prefix"] != "changed after create"
        assert again.progress.hashes == 0
        assert await store.get("pow_0_missing") is None


@ALL
async def test_a_create_with_a_taken_id_creates_nothing(store_settings: StoreSettings) -> None:
    async with opened(store_settings) as store:
        first = mine(store)
        await store.create([first])
        fresh = mine(store)
        with pytest.raises(JobExistsError):
            await store.create([fresh, mine(store, job_id=first.job_id)])
        assert await store.get(fresh.job_id) is None
        _, total = await store.find(JobQuery())
        assert total == 1


def tags_of(n: int) -> list[str]:
    if n % 2:
        return ["odd"]
    return ["even", "four"] if n % 4 == 0 else ["even"]


@ALL
async def test_find_filters_sorts_and_pages(store_settings: StoreSettings) -> None:
    async with opened(store_settings) as store:
        statuses = [JobStatus.QUEUED, JobStatus.RUNNING, JobStatus.COMPLETED]
        records = []
        for n in range(12):
            created = BASE_TIME + timedelta(minutes=n)
            records.append(
                mine(
                    store,
                    statuses[n % 3],
                    created=created,
                    tags=tags_of(n),
                    batch_id="batch_a" if n < 4 else None,
                    task_id="batch_a" if n == 0 else (f"t{n}" if n == 7 else None),
                    principal="alice" if n == 5 else ("bob" if n == 6 else None),
                    job_data={"prefix": f"p{n}", "priority": ["low", "high"][n % 2]},
                )
            )
        await store.create(records)
        newest = [r.job_id for r in reversed(records)]

        async def ids(**query: object) -> tuple[list[str], int]:
            page, total = await store.find(JobQuery(**query))  # type: ignore[arg-type]
            return [r.job_id for r in page], total

        assert await ids() == (newest[:12], 12)
        assert await ids(limit=5, offset=5) == (newest[5:10], 12)
        assert await ids(offset=100) == ([], 12)
        running_or_done = frozenset({JobStatus.RUNNING, JobStatus.COMPLETED})
        expected = [r.job_id for r in reversed(records) if r.status in running_or_done]
        assert await ids(statuses=running_or_done) == (expected, 8)
        assert await ids(tags=frozenset({"even", "four"})) == (
            [records[n].job_id for n in (8, 4, 0)],
            3,
        )
        assert await ids(batch_id="batch_a", descending=False) == (
            [r.job_id for r in records[:4]],
            4,
        )
        window = {"created_after": records[2].created_at, "created_before": records[5].created_at}
        assert await ids(**window) == ([records[4].job_id, records[3].job_id], 2)
        by_priority, _ = await ids(sort_by="priority")
        assert by_priority[:6] == [records[n].job_id for n in (11, 9, 7, 5, 3, 1)]
        assert by_priority[6:] == [records[n].job_id for n in (10, 8, 6, 4, 2, 0)]
        alice, total = await ids(visible_to="alice")
        assert total == 11 and records[6].job_id not in alice and records[5].job_id in alice
        assert await ids(tasks_only=True) == ([records[7].job_id, records[0].job_id], 2)
        prefix = records[3].job_id[:-1]
        expected_prefixed = [r.job_id for r in reversed(records) if r.job_id.startswith(prefix)]
        assert await ids(id_prefix=prefix) == (expected_prefixed, len(expected_prefixed))
        assert await ids(id_prefix="%") == ([], 0)  # a LIKE wildcard is a plain character


# -- the transitions ---------------------------------------------------------------------------


@ALL
async def test_owner_moves_need_the_owner(store_settings: StoreSettings) -> None:
    async with opened(store_settings) as store:
        record = mine(store)
        await store.create([record])
        stranger = record.model_copy(update={"owner": "someone-else", "status": JobStatus.RUNNING})
        assert await store.claim(stranger) is False
        assert await store.save_progress([stranger]) == {record.job_id}
        running = record.model_copy(update={"status": JobStatus.RUNNING})
        assert await store.claim(running) is True
        got = await stored(store, record.job_id)
        assert got.status is JobStatus.RUNNING and got.owner == store.instance_id


@ALL
async def test_progress_saves_keep_the_stored_status(store_settings: StoreSettings) -> None:
    async with opened(store_settings) as store:
        record = mine(store)
        await store.create([record])
        running = record.model_copy(update={"status": JobStatus.RUNNING})
        await store.claim(running)
        _, paused = await store.pause(record.job_id)
        assert paused
        progress = running.model_copy(
            update={
                "progress": Progress(hashes=500, best_zeros=3, best_nonce="77"),
                "checkpoint": Checkpoint(layout=1, position=512, in_flight=[(256, 128)]),
            }
        )
        assert await store.save_progress([progress]) == set()
        got = await stored(store, record.job_id)
        assert got.status is JobStatus.PAUSED  # the owner's record said running: not applied
        assert got.progress.hashes == 500 and got.progress.best_nonce == "77"
        assert got.checkpoint == Checkpoint(layout=1, position=512, in_flight=[(256, 128)])


@ALL
async def test_a_finished_job_stays_finished(store_settings: StoreSettings) -> None:
    async with opened(store_settings) as store:
        record = mine(store, JobStatus.RUNNING)
        await store.create([record])
        done = record.model_copy(update={"status": JobStatus.COMPLETED, "error": None})
        assert await store.finish(done) is True
        got = await stored(store, record.job_id)
        assert got.status is JobStatus.COMPLETED and got.completed_at is not None
        assert await store.finish(done.model_copy(update={"status": JobStatus.FAILED})) is False
        assert await store.claim(record) is False
        assert await store.save_progress([record]) == {record.job_id}
        assert await store.cancel(record.job_id) == (got, False)
        assert (await store.pause(record.job_id))[1] is False
        assert (await store.resume(record.job_id, store.instance_id))[1] is False
        assert await stored(store, record.job_id) == got


@ALL
async def test_cancel_pause_and_resume(store_settings: StoreSettings) -> None:
    async with opened(store_settings) as store:
        record = mine(store, JobStatus.RUNNING)
        await store.create([record])
        paused, changed = await store.pause(record.job_id)
        assert changed and paused.status is JobStatus.PAUSED
        assert (await store.pause(record.job_id))[1] is False  # already paused
        queued, changed = await store.resume(record.job_id, "another-instance")
        assert changed and queued.status is JobStatus.QUEUED and queued.owner == "another-instance"
        assert (await store.resume(record.job_id, store.instance_id))[1] is False
        await store.pause(record.job_id)
        cancelled, changed = await store.cancel(record.job_id)  # a paused job can be cancelled
        assert changed and cancelled.status is JobStatus.CANCELLED
        assert cancelled.completed_at is not None
        with pytest.raises(JobNotFoundError):
            await store.cancel("pow_0_missing")


@ALL
async def test_requeue_release_and_adopt(store_settings: StoreSettings) -> None:
    async with opened(store_settings) as store:
        record = mine(store, JobStatus.RUNNING)
        await store.create([record])
        retry = record.model_copy(update={"run_after": utc_now() + timedelta(seconds=60)})
        assert await store.requeue(retry) is True
        got = await stored(store, record.job_id)
        assert got.status is JobStatus.QUEUED and got.run_after == retry.run_after
        assert await store.release(got) is True
        released = await stored(store, record.job_id)
        assert released.owner == ANY_INSTANCE and released.status is JobStatus.QUEUED
        assert [r.job_id for r in await store.orphans()] == [record.job_id]
        entry = Recovery(at=utc_now(), from_status="queued", hashes=0)
        adopted = released.model_copy(update={"owner": store.instance_id, "recoveries": [entry]})
        assert await store.adopt(adopted, from_owner=ANY_INSTANCE) is True
        assert await store.adopt(adopted, from_owner=ANY_INSTANCE) is False  # it has one now
        got = await stored(store, record.job_id)
        assert got.owner == store.instance_id and got.recoveries == [entry]
        assert await store.orphans() == []


@ALL
async def test_racing_finish_and_cancel_one_wins(store_settings: StoreSettings) -> None:
    async with opened(store_settings) as store:
        records = [mine(store, JobStatus.RUNNING) for _ in range(20)]
        await store.create(records)
        wins: dict[str, list[str]] = {r.job_id: [] for r in records}

        async def finish(record: JobRecord) -> None:
            done = record.model_copy(update={"status": JobStatus.COMPLETED})
            if await store.finish(done):
                wins[record.job_id].append("finish")

        async def cancel(record: JobRecord) -> None:
            if (await store.cancel(record.job_id))[1]:
                wins[record.job_id].append("cancel")

        async with anyio.create_task_group() as tg:
            for record in records:
                tg.start_soon(finish, record)
                tg.start_soon(cancel, record)
        for record in records:
            (winner,) = wins[record.job_id]
            status = (await stored(store, record.job_id)).status
            assert status is (JobStatus.COMPLETED if winner == "finish" else JobStatus.CANCELLED)


@PERSISTENT
async def test_racing_instances_one_wins(store_settings: StoreSettings) -> None:
    async with opened(store_settings) as a, opened(store_settings) as b:
        assert a.instance_id != b.instance_id
        records = [mine(a, JobStatus.RUNNING) for _ in range(10)]
        await a.create(records)
        outcomes: list[tuple[str, str]] = []

        async def finish(record: JobRecord) -> None:
            if await a.finish(record.model_copy(update={"status": JobStatus.COMPLETED})):
                outcomes.append((record.job_id, "completed"))

        async def cancel(record: JobRecord) -> None:
            if (await b.cancel(record.job_id))[1]:
                outcomes.append((record.job_id, "cancelled"))

        async with anyio.create_task_group() as tg:
            for record in records:
                tg.start_soon(finish, record)
                tg.start_soon(cancel, record)
        assert sorted(job_id for job_id, _ in outcomes) == sorted(r.job_id for r in records)
        for job_id, status in outcomes:
            assert (await stored(b, job_id)).status.value == status


@ALL
async def test_delete_finished_by_age_and_keep_until(store_settings: StoreSettings) -> None:
    async with opened(store_settings) as store:
        now = utc_now()
        hour = timedelta(hours=1)
        old = mine(store, JobStatus.COMPLETED, completed_at=now - 2 * hour)
        recent = mine(store, JobStatus.FAILED, completed_at=now - hour / 2)
        kept = mine(store, JobStatus.CANCELLED, completed_at=now - 2 * hour, keep_until=now + hour)
        no_completed = mine(store, JobStatus.FAILED, created=now - 3 * hour)
        active = [
            mine(store, s, created=now - 5 * hour)
            for s in JobStatus
            if s.value in ("queued", "waiting", "running", "paused")
        ]
        await store.create([old, recent, kept, no_completed, *active])

        removed = await store.delete_finished(3600, now=now)
        assert sorted(removed) == sorted([old.job_id, no_completed.job_id])
        assert await store.delete_finished(3600, now=now) == []
        assert await store.delete_finished(0, now=now) == [recent.job_id]
        assert await store.delete_finished(0, now=now + 2 * hour) == [kept.job_id]
        assert await store.delete_finished(1e12) == []  # far past every date: nothing
        _, total = await store.find(JobQuery())
        assert total == len(active)


@ALL
async def test_runnable_jobs_come_in_dispatch_order(store_settings: StoreSettings) -> None:
    async with opened(store_settings) as store:
        now = utc_now()

        def queued(priority: str, minutes: int, **fields: object) -> JobRecord:
            return mine(
                store,
                created=BASE_TIME + timedelta(minutes=minutes),
                job_data={"prefix": "x", "priority": priority},
                **fields,
            )

        normal_old, normal_new = queued("normal", 1), queued("normal", 2)
        critical = queued("critical", 3)
        blocked = queued("critical", 0, blocked_by=["pow_1_dep"])
        later = queued("high", 0, run_after=now + timedelta(hours=1))
        due = queued("low", 0, run_after=now - timedelta(seconds=1))
        theirs = make_record(JobStatus.QUEUED, owner="someone-else")
        await store.create([normal_new, blocked, later, due, theirs, critical, normal_old])
        runnable = await store.runnable(store.instance_id, now, limit=10)
        assert [r.job_id for r in runnable] == [
            critical.job_id,
            normal_old.job_id,
            normal_new.job_id,
            due.job_id,
        ]
        assert len(await store.runnable(store.instance_id, now, limit=2)) == 2
        assert await store.count(frozenset({JobStatus.QUEUED})) == 7
        counts = await store.status_counts()
        assert counts[JobStatus.QUEUED] == 7 and counts[JobStatus.RUNNING] == 0
        owned = await store.owned(store.instance_id, frozenset({JobStatus.QUEUED}))
        assert len(owned) == 6


@ALL
async def test_a_closed_store_refuses_work(store_settings: StoreSettings) -> None:
    async with opened(store_settings) as store:
        await store.create([mine(store)])
        await store.close()
        await store.close()
        with pytest.raises(StoreClosedError):
            await store.create([mine(store)])
        with pytest.raises(StoreClosedError):
            await store.get("pow_1_x")


# -- persistence -------------------------------------------------------------------------------


@PERSISTENT
async def test_everything_acknowledged_survives_a_reopen(store_settings: StoreSettings) -> None:
    async with opened(store_settings) as store:
        created = mine(store, JobStatus.RUNNING, tags=["t"])
        finished = mine(store, JobStatus.RUNNING)
        await store.create([created, finished])
        done = finished.model_copy(update={"status": JobStatus.COMPLETED})
        await store.finish(done)
        await store.save_progress([created.model_copy(update={"progress": Progress(hashes=9)})])
    async with opened(store_settings) as again:
        one = await stored(again, created.job_id)
        assert one.tags == ["t"] and one.progress.hashes == 9
        assert (await stored(again, finished.job_id)).status is JobStatus.COMPLETED


@PERSISTENT
async def test_a_gone_instances_jobs_become_orphans(store_settings: StoreSettings) -> None:
    async with opened(store_settings) as survivor:
        async with opened(store_settings) as doomed:
            running = mine(doomed, JobStatus.RUNNING)
            paused = mine(doomed, JobStatus.PAUSED)
            await doomed.create([running, paused])
            assert await survivor.orphans() == []
        # Closed: its instance lock or lease is gone at once. Paused jobs are nobody's concern.
        assert [r.job_id for r in await survivor.orphans()] == [running.job_id]


@DATABASES
async def test_an_expired_lease_makes_orphans_without_a_restart(
    store_settings: StoreSettings,
) -> None:
    lease = 0.6
    async with opened(store_settings, lease_seconds=lease) as survivor:
        began = anyio.current_time()  # its last renewal is no earlier than this
        silent = await _open_without_renewals(store_settings, lease)
        try:
            job = make_record(JobStatus.RUNNING, owner=silent.instance_id)
            await silent.create([job])
            with anyio.fail_after(10):
                while not await survivor.orphans():
                    await survivor.wait_for_change()
            waited = anyio.current_time() - began
            assert waited >= lease  # never before the lease has expired
            assert [r.job_id for r in await survivor.orphans()] == [job.job_id]
        finally:
            await silent.close()


@DATABASES
async def test_a_live_instance_keeps_its_jobs(store_settings: StoreSettings) -> None:
    lease = 0.6
    async with (
        opened(store_settings, lease_seconds=lease) as a,
        opened(store_settings, lease_seconds=lease) as b,
    ):
        await a.create([mine(a, JobStatus.RUNNING)])
        with anyio.move_on_after(lease * 4):
            while True:
                assert await b.orphans() == []
                await anyio.sleep(lease / 4)


async def _open_without_renewals(settings: StoreSettings, lease: float) -> JobStore:
    """An instance that registered, then stopped renewing: as if its process froze or died."""
    from pow_mcp.store import connect

    fields = {**settings.__dict__, "lease_seconds": lease}
    return await connect(StoreSettings(**fields))  # type: ignore[arg-type]
