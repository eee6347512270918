"""The job manager on an in-process pool and a memory store: dispatch order, capacity,
dependencies, retries, pause and resume, the recovery policy. (Every behaviour here is also
tested end to end with real processes in test_server_*.py.)"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import anyio
import pytest

from pow_mcp.pow.layout import LAYOUT_LATEST
from pow_mcp.pow.pool.base import JobHandle, ProgressCallback
from pow_mcp.pow.pool.inline import InlinePool
from pow_mcp.pow.scheduler import Outcome, OutcomeKind, Progress, SearchTask
from pow_mcp.server.config import Config
from pow_mcp.server.jobs.blocks import BlockClock
from pow_mcp.server.jobs.live import LiveJob
from pow_mcp.server.jobs.manager import JobManager
from pow_mcp.server.jobs.spec import JobInputError, JobSpec
from pow_mcp.store import ANY_INSTANCE, JobRecord, JobStatus, MemoryJobStore
from pow_mcp.store.record import INTERRUPTED_ERROR, Recovery
from tests.store_helpers import make_record


class FlakyPool(InlinePool):
    """Fails the first attempt of jobs whose prefix starts with "flaky" (as a pool whose
    workers keep dying would), before hashing anything."""

    def __init__(self) -> None:
        super().__init__(chunk=512)
        self.failed: set[str] = set()

    def submit(
        self, job_id: str, task: SearchTask, on_progress: ProgressCallback | None = None
    ) -> JobHandle:
        if not task.prefix.startswith("flaky") or job_id in self.failed:
            return super().submit(job_id, task, on_progress)
        self.failed.add(job_id)
        handle = JobHandle(job_id, on_progress)
        progress = Progress(task.hashes, 0.0, 0, None, None, task.checkpoint)
        handle.deliver(Outcome(OutcomeKind.FAILED, progress, error="worker processes died"))
        return handle


@asynccontextmanager
async def manager(
    tmp_path: Path, pool: InlinePool | None = None, **config: Any
) -> AsyncIterator[JobManager]:
    store = MemoryJobStore("test-instance")
    pool = pool or InlinePool()
    settings = replace(Config(data_dir=tmp_path), save_debounce_seconds=0.01, **config)
    async with anyio.create_task_group() as tg:
        tg.start_soon(pool.run_forever)
        m = JobManager(settings, store, pool, BlockClock(None, 5.0), tg)
        tg.start_soon(m.run_background)
        try:
            yield m
        finally:
            await m.shutdown()
            await pool.aclose()
            tg.cancel_scope.cancel()


def spec(prefix: str = "job-", difficulty: int = 2, **fields: Any) -> JobSpec:
    return JobSpec(prefix=prefix, difficulty=difficulty, **fields)


async def ended(m: JobManager, job_id: str) -> JobRecord:
    record, timed_out = await m.wait(job_id, 20)
    assert not timed_out, record
    return record


async def test_jobs_complete_with_proofs(tmp_path: Path) -> None:
    async with manager(tmp_path) as m:
        records = await m.start([spec("a-"), spec("b-", 3)])
        for record in records:
            done = await ended(m, record.job_id)
            assert done.status is JobStatus.COMPLETED and done.result is not None
            assert [a.outcome for a in done.attempts] == ["completed"]


async def test_capacity_and_priority_decide_what_hashes(tmp_path: Path) -> None:
    async with manager(tmp_path, workers=1) as m:
        m.dispatcher.capacity = 2
        normal = await m.start([spec(f"n{i}-", 64) for i in range(3)])
        with anyio.fail_after(5):
            while len(m.dispatcher.live) < 2:  # noqa: ASYNC110  # the dispatcher's own pace
                await anyio.sleep(0.01)
        assert set(m.dispatcher.live) == {normal[0].job_id, normal[1].job_id}  # oldest first
        (urgent,) = await m.start([spec("urgent-", 2, priority="critical")])
        done = await ended(m, urgent.job_id)  # let in past the capacity: it outranks them
        assert done.status is JobStatus.COMPLETED
        assert (await m.get(normal[2].job_id)).status is JobStatus.QUEUED
        for record in normal:
            await m.cancel(record.job_id)


async def test_dependencies(tmp_path: Path) -> None:
    async with manager(tmp_path) as m:
        (first,) = await m.start([spec("first-", 64)])
        (second,) = await m.start([spec("second-", depends_on=(first.job_id,))])
        assert second.blocked_by == [first.job_id]
        with pytest.raises(JobInputError, match="pow_1_missing"):
            await m.start([spec(depends_on=("pow_1_missing",))])
        await m.cancel(first.job_id)
        failed = await ended(m, second.job_id)
        assert failed.error == f"dependency {first.job_id} was cancelled"
        (third,) = await m.start([spec("third-")])
        (fourth,) = await m.start([spec("fourth-", depends_on=(third.job_id,))])
        assert (await ended(m, fourth.job_id)).status is JobStatus.COMPLETED


async def test_a_failed_attempt_is_retried_from_its_checkpoint(tmp_path: Path) -> None:
    pool = FlakyPool()
    async with manager(tmp_path, pool) as m:
        (job,) = await m.start([spec("flaky-", 3, max_retries=1, retry_delay_seconds=0.2)])
        done = await ended(m, job.job_id)
        assert done.status is JobStatus.COMPLETED
        assert [a.outcome for a in done.attempts] == ["retried", "completed"]
        assert "worker processes died" in (done.attempts[0].error or "")
        (once,) = await m.start([spec("flaky-no-retry-", 3)])
        failed = await ended(m, once.job_id)
        assert failed.status is JobStatus.FAILED and "worker processes died" in (failed.error or "")


async def test_pause_and_resume_search_each_position_once(tmp_path: Path) -> None:
    async with manager(tmp_path) as m:
        (job,) = await m.start([spec("pause-", 64, max_iterations=200_000)])
        with anyio.fail_after(10):
            while (await m.get(job.job_id)).progress.hashes == 0:  # noqa: ASYNC110
                await anyio.sleep(0.01)
        paused, changed = await m.pause(job.job_id)
        assert changed and paused.status is JobStatus.PAUSED
        stored = await m.store.get(job.job_id)
        assert stored is not None and stored.checkpoint is not None
        assert stored.checkpoint.position == stored.progress.hashes > 0
        assert stored.checkpoint.in_flight == []
        await m.resume(job.job_id)
        done = await ended(m, job.job_id)
        # Exhausted exactly: the two stretches hashed every position of [0, 200000) once.
        assert done.status is JobStatus.FAILED and done.progress.hashes == 200_000
        assert done.error == "no proof within 200000 hashes (max_iterations reached)"
        assert [a.outcome for a in done.attempts] == ["paused", "failed"]


async def test_a_job_paused_and_resumed_elsewhere_between_two_looks_goes_on(
    tmp_path: Path,
) -> None:
    # Another process paused and resumed it, and this instance took it back, before this
    # instance ever saw the pause: the store says queued while the job still hashes here.
    async with manager(tmp_path) as m:
        (job,) = await m.start([spec("bounce-", 64, max_iterations=200_000)])
        with anyio.fail_after(10):
            while (await m.get(job.job_id)).progress.hashes == 0:  # noqa: ASYNC110
                await anyio.sleep(0.01)
        stored = await m.store.get(job.job_id)
        assert stored is not None and stored.status is JobStatus.RUNNING
        bounced = stored.model_copy(update={"status": JobStatus.QUEUED})
        assert await m.store.adopt(bounced, from_owner=stored.owner)
        await m.dispatcher.check_live([job.job_id])
        again = await m.store.get(job.job_id)
        assert again is not None and again.status is JobStatus.RUNNING
        done = await ended(m, job.job_id)
        assert done.status is JobStatus.FAILED and done.progress.hashes == 200_000
        assert [a.outcome for a in done.attempts] == ["failed"]


async def test_a_look_at_the_store_between_a_retry_and_its_job_leaving_keeps_the_retry(
    tmp_path: Path,
) -> None:
    # The store says queued (a retry, later) while the failed attempt's job is still live
    # here for a moment: that is not the "paused and resumed elsewhere" case above.
    async with manager(tmp_path, FlakyPool()) as m:
        requeue = m.store.requeue
        looked: list[LiveJob] = []
        requeued = anyio.Event()

        async def then_look(record: JobRecord) -> bool:
            done = await requeue(record)
            looked.append(m.dispatcher.live[record.job_id])  # still here
            await m.dispatcher.check_live([record.job_id])  # before the job learns of it
            requeued.set()
            return done

        m.store.requeue = then_look  # type: ignore[method-assign]
        (job,) = await m.start([spec("flaky-", 2, max_retries=1, retry_delay_seconds=60)])
        with anyio.fail_after(10):
            await requeued.wait()
            await looked[0].done.wait()  # the attempt is over and the job left
        stored = await m.store.get(job.job_id)
        assert stored is not None and stored.status is JobStatus.QUEUED
        assert [a.outcome for a in stored.attempts] == ["retried"]


async def test_a_wait_sleeps_through_progress_and_answers_at_the_end(tmp_path: Path) -> None:
    """An open wait (a job view keeps one per job) is woken by a status change or the end,
    not by each progress report: a hundred views woken many times a second took a good part
    of the pool's rate."""
    async with manager(tmp_path) as m:
        (record,) = await m.start([spec("long-", 64)])  # finds nothing: it ends when cancelled
        looks = 0
        look = m.waits.record_of

        async def counted(job_id: str) -> JobRecord:
            nonlocal looks
            looks += 1
            return await look(job_id)

        m.waits.record_of = counted
        answer: list[JobRecord] = []

        async def wait() -> None:
            answer.append(await ended(m, record.job_id))

        with anyio.fail_after(20):
            async with anyio.create_task_group() as tg:
                tg.start_soon(wait)
                while record.job_id not in m.dispatcher.live:  # noqa: ASYNC110  # no event
                    await anyio.sleep(0.01)
                for _ in range(20):  # twenty progress reports of the live job
                    await m.dispatcher.live[record.job_id].changed.wait()
                assert looks <= 2  # the first look, and one when the job started
                await m.cancel(record.job_id)
        assert answer[0].status is JobStatus.CANCELLED
        assert looks <= 4  # and one or two at the end (the cancel, the attempt's end)


async def test_the_recovery_policy(tmp_path: Path) -> None:
    def orphan(owner: str | None, **fields: Any) -> JobRecord:
        data = {"prefix": "orphan-", "difficulty": 2}
        return make_record(JobStatus.RUNNING, owner=owner, job_data=data, **fields)

    async with manager(tmp_path, recovery="fail") as m:
        failed = orphan("gone-instance")
        handed = orphan(ANY_INSTANCE).model_copy(update={"status": JobStatus.QUEUED})
        await m.store.create([failed, handed])
        await m.recover_orphans()  # (or the manager's own loop, a moment earlier)
        assert (await m.get(failed.job_id)).error == INTERRUPTED_ERROR
        done = await ended(m, handed.job_id)  # handed over, not interrupted: it just runs
        assert done.status is JobStatus.COMPLETED and done.recoveries == []

    async with manager(tmp_path, recovery="resume", max_recoveries=1) as m:
        resumed = orphan("gone-instance")
        worn = orphan(
            "gone-instance", recoveries=[Recovery(at=resumed.created_at, from_status="running")]
        )
        await m.store.create([resumed, worn])
        await m.recover_orphans()
        done = await ended(m, resumed.job_id)
        assert done.status is JobStatus.COMPLETED and len(done.recoveries) == 1
        failed = await m.get(worn.job_id)
        assert failed.status is JobStatus.FAILED and "JOBS_MAX_RECOVERIES=1" in (failed.error or "")


async def test_a_graceful_stop_follows_the_policy(tmp_path: Path) -> None:
    for policy, status in (("fail", JobStatus.FAILED), ("resume", JobStatus.QUEUED)):
        async with manager(tmp_path, recovery=policy) as m:
            (job,) = await m.start([spec("stop-", 64)])
            (queued,) = await m.start([spec("later-", 64, depends_on=(job.job_id,))])
            store = m.store
        for record in (await store.get(job.job_id), await store.get(queued.job_id)):
            assert record is not None and record.status is status
            assert record.owner == (ANY_INSTANCE if policy == "resume" else "test-instance")


async def test_a_job_keeps_the_search_order_it_was_created_with(tmp_path: Path) -> None:
    async with manager(tmp_path) as m:
        (new,) = await m.start([spec("order-", 3)])
        assert new.checkpoint is not None and new.checkpoint.layout == LAYOUT_LATEST
        old = make_record(
            JobStatus.PAUSED,
            owner="test-instance",
            job_data={"prefix": "order-", "difficulty": 3},
            checkpoint=1000,  # a checkpoint from before layouts: a bare nonce
        )
        await m.store.create([old])
        await m.resume(old.job_id)
        done_old, done_new = await ended(m, old.job_id), await ended(m, new.job_id)
    for done in (done_old, done_new):
        assert done.result is not None and done.result.proof_of_work is not None
    # The old job went on in the plain order (nonce = position, from 1000 on); the new one
    # searches the latest layout, whose nonces for a short prefix have 16 digits.
    assert 1000 <= int(done_old.result.proof_of_work.nonce or 0) < 10**15
    assert done_old.checkpoint is not None and done_old.checkpoint.layout == 1
    assert len(done_new.result.proof_of_work.nonce or "") == 16
