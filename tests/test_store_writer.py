"""Debounced progress saves (`ProgressWriter`) and group commit (`GroupCommit`)."""

from __future__ import annotations

from collections.abc import Sequence

import anyio
import pytest
from anyio import wait_all_tasks_blocked

from pow_mcp.store import JobRecord, JobStatus, MemoryJobStore, Progress, StoreWriteError
from pow_mcp.store.writer import GroupCommit, ProgressWriter
from tests.store_helpers import make_record


class CountingStore(MemoryJobStore):
    """A memory store that counts progress saves and can be told to fail them."""

    def __init__(self) -> None:
        super().__init__("test-instance")
        self.saves: list[list[str]] = []
        self.saved = anyio.Event()
        self.failing = False

    async def save_progress(self, records: Sequence[JobRecord]) -> set[str]:
        if self.failing:
            raise StoreWriteError("disk full")
        self.saves.append([r.job_id for r in records])
        self.saved.set()
        return await super().save_progress(records)


async def running(store: CountingStore, n: int = 1) -> list[JobRecord]:
    records = [make_record(JobStatus.RUNNING, owner=store.instance_id) for _ in range(n)]
    await store.create(records)
    return records


def progressed(record: JobRecord, hashes: int) -> JobRecord:
    return record.model_copy(update={"progress": Progress(hashes=hashes)})


async def test_a_burst_of_progress_is_one_save_of_the_latest() -> None:
    store = CountingStore()
    a, b = await running(store, 2)
    writer = ProgressWriter(store, debounce_seconds=0.05)
    async with anyio.create_task_group() as tg:
        tg.start_soon(writer.run)
        for hashes in range(1, 201):
            writer.put(progressed(a, hashes))
            writer.put(progressed(b, hashes * 2))
        with anyio.fail_after(5):
            await store.saved.wait()
        tg.cancel_scope.cancel()
    assert len(store.saves) == 1 and sorted(store.saves[0]) == sorted([a.job_id, b.job_id])
    got_a, got_b = await store.get(a.job_id), await store.get(b.job_id)
    assert got_a is not None and got_a.progress.hashes == 200
    assert got_b is not None and got_b.progress.hashes == 400


async def test_flush_saves_now_and_a_failure_is_kept_for_later() -> None:
    store = CountingStore()
    (a,) = await running(store)
    writer = ProgressWriter(store, debounce_seconds=3600)
    writer.put(progressed(a, 5))
    store.failing = True
    with pytest.raises(StoreWriteError):
        await writer.flush()
    writer.put(progressed(a, 6))  # newer than the failed one: it replaces it
    store.failing = False
    await writer.flush()
    got = await store.get(a.job_id)
    assert got is not None and got.progress.hashes == 6
    await writer.flush()  # nothing pending: no save
    assert len(store.saves) == 1


async def test_jobs_that_are_not_ours_any_more_are_reported() -> None:
    store = CountingStore()
    mine, cancelled = await running(store, 2)
    await store.cancel(cancelled.job_id)
    lost: list[set[str]] = []
    writer = ProgressWriter(store, debounce_seconds=3600, on_lost=lost.append)
    writer.put(progressed(mine, 1))
    writer.put(progressed(cancelled, 1))
    writer.discard("pow_0_never_put")
    await writer.flush()
    assert lost == [{cancelled.job_id}]


async def test_group_commit_batches_what_arrives_during_a_write() -> None:
    batches: list[list[int]] = []
    release = anyio.Event()

    async def run_batch(ops: list[int]) -> list[object]:
        batches.append(ops)
        if len(batches) == 1:
            await release.wait()
        return [ValueError(f"odd {op}") if op % 2 else op * 10 for op in ops]

    commit: GroupCommit[int] = GroupCommit(run_batch)
    results: dict[int, object] = {}

    async def submit(op: int) -> None:
        try:
            results[op] = await commit.submit(op)
        except ValueError as exc:
            results[op] = str(exc)

    async with anyio.create_task_group() as tg:
        tg.start_soon(submit, 0)
        await wait_all_tasks_blocked()
        for op in range(1, 6):
            tg.start_soon(submit, op)
        await wait_all_tasks_blocked()
        release.set()
    assert batches == [[0], [1, 2, 3, 4, 5]]
    assert results == {0: 0, 1: "odd 1", 2: 20, 3: "odd 3", 4: 40, 5: "odd 5"}
