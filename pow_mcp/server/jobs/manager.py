"""The job manager: what the tools call, one object that answers for any job and hands
each request to the part of the job flow that owns it.

A job's creation and every status move are store transitions, durable before the call that
reports them returns (intake.py, the store); this instance runs its jobs (dispatcher.py,
runner.py) and shows them live; progress reaches the store through the debounced
`ProgressWriter`; waits.py answers waits, recovery.py takes over interrupted jobs.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace

import anyio
from anyio.abc import TaskGroup

from pow_mcp.pow.difficulty import age_difficulty, expected_hashes
from pow_mcp.pow.pool import HashingPool
from pow_mcp.server.auth import CALLER
from pow_mcp.server.config import Config
from pow_mcp.server.jobs.blocks import Anchor, BlockClock
from pow_mcp.server.jobs.dispatcher import Dispatcher
from pow_mcp.server.jobs.intake import Intake
from pow_mcp.server.jobs.live import LiveJob, StopReason
from pow_mcp.server.jobs.recovery import Recoveries
from pow_mcp.server.jobs.runner import Runner
from pow_mcp.server.jobs.spec import JobInputError, JobSpec, TaskRequest
from pow_mcp.server.jobs.waits import ProgressReporter, Waits
from pow_mcp.store import (
    TERMINAL,
    JobNotFoundError,
    JobQuery,
    JobRecord,
    JobStatus,
    JobStore,
    StoreError,
)
from pow_mcp.store.query import visible
from pow_mcp.store.writer import ProgressWriter

log = logging.getLogger(__name__)


class UnknownJob(LookupError):
    pass


def capacity_for(workers: int) -> int:
    """How many jobs hash at once: enough to share the workers, few enough to finish."""
    return max(4, 2 * workers)


class JobManager:
    def __init__(
        self,
        config: Config,
        store: JobStore,
        pool: HashingPool,
        clock: BlockClock,
        task_group: TaskGroup,
    ) -> None:
        self.config, self.store, self.pool, self.clock = config, store, pool, clock
        self.writer = ProgressWriter(store, config.save_debounce_seconds, self._lost)
        self.runner = Runner(config, store, pool, clock, self.writer)
        self.dispatcher = Dispatcher(
            store,
            self.runner,
            task_group,
            capacity=capacity_for(pool.size),
            block_time=config.block_time_seconds,
            changed=self._signal,
        )
        self.waits = Waits(store, self.dispatcher, self.get)
        self.intake = Intake(config, store, pool, clock, self.dispatcher)
        self.recoveries = Recoveries(config, store, self._taken_over)
        self._tg = task_group
        self._closing = False

    async def run_background(self) -> None:
        """The dispatcher, the progress writer, recovery and the waits' watch of the store; run
        it in a task group."""
        async with anyio.create_task_group() as tg:
            tg.start_soon(self.dispatcher.run, name="dispatcher")
            tg.start_soon(self.dispatcher.watch_peers, name="watch peers")
            tg.start_soon(self.writer.run, name="progress writer")
            tg.start_soon(self.recoveries.run, name="recovery")
            tg.start_soon(self.waits.run, name="waits")

    async def start(
        self,
        specs: Sequence[JobSpec],
        *,
        tags: Sequence[str] = (),
        batch_id: str | None = None,
        task: TaskRequest | None = None,
    ) -> list[JobRecord]:
        """Record the jobs durably (all or none) and queue them, for the calling principal;
        returns their records."""
        if self._closing:
            raise JobInputError("the server is shutting down; start the job again after restart")
        return await self.intake.start(specs, tags=tags, batch_id=batch_id, task=task)

    def current_difficulty(self, record: JobRecord) -> int:
        """The difficulty a job must meet now (age-based: at the current height)."""
        data = record.job_data
        if isinstance(data.get("difficulty"), int):
            return int(data["difficulty"])
        live = self.dispatcher.live.get(record.job_id)
        if live is not None and live.difficulty:
            return live.difficulty
        if record.waiting_info is not None and record.waiting_info.current_difficulty:
            return record.waiting_info.current_difficulty
        try:
            spec = JobSpec.from_job_data(data)
        except JobInputError:
            return 0
        anchor = self.clock.anchor
        if anchor is None and spec.current_block_height is not None:
            anchor = Anchor(spec.current_block_height, self.config.block_time_seconds)
        if anchor is None or spec.block_start is None or spec.difficulty_range is None:
            return 0
        return age_difficulty(anchor.now() - spec.block_start, spec.difficulty_range)

    # -- queries -----------------------------------------------------------------------------

    async def get(self, job_id: str) -> JobRecord:
        """The job's record: live if this instance runs it, else as stored."""
        live = self.dispatcher.live.get(job_id)
        record = live.record if live is not None and not live.done.is_set() else None
        if record is None:
            record = await self.store.get(job_id)
        if record is None or not visible(record.principal, CALLER.get().viewer):
            raise UnknownJob(job_id)  # another principal's job is as good as absent
        return record

    async def find(self, query: JobQuery) -> tuple[list[JobRecord], int]:
        viewer = CALLER.get().viewer
        if viewer is not None:
            query = replace(query, visible_to=viewer)
        records, total = await self.store.find(query)
        return [self._live_or(record) for record in records], total

    def _live_or(self, record: JobRecord) -> JobRecord:
        live = self.dispatcher.live.get(record.job_id)
        if live is None or live.done.is_set() or live.record.status is not record.status:
            return record
        return live.record

    async def cleanup(self, max_age_seconds: float) -> list[str]:
        """Remove finished jobs (a principal who does not see all: its own only)."""
        caller = CALLER.get()
        principal = None if caller.sees_all else caller.principal
        return await self.store.delete_finished(max_age_seconds, principal=principal)

    # -- control -----------------------------------------------------------------------------

    async def cancel(self, job_id: str) -> tuple[JobRecord, bool]:
        """Stop a job wherever it runs; returns its record and whether this call cancelled it."""
        await self.get(job_id)  # visible to the caller, or UnknownJob
        record, changed = await self._store_move(self.store.cancel, job_id)
        live = self.dispatcher.live.get(job_id)
        if changed and live is not None:
            live.request_stop(StopReason.CANCEL)
            await live.done.wait()
        self._signal()
        return record, changed

    async def pause(self, job_id: str) -> tuple[JobRecord, bool]:
        """queued, waiting or running -> paused, keeping the checkpoint; (record, changed)."""
        await self.get(job_id)
        record, changed = await self._store_move(self.store.pause, job_id)
        live = self.dispatcher.live.get(job_id)
        if changed and live is not None:
            live.request_stop(StopReason.PAUSE)
            await live.done.wait()  # the workers are released and the checkpoint saved
            record = await self.get(job_id)
        self._signal()
        return record, changed

    async def resume(self, job_id: str) -> tuple[JobRecord, bool]:
        """paused -> queued, run by this instance from its checkpoint; (record, changed)."""
        await self.get(job_id)
        record, changed = await self._store_move(
            lambda i: self.store.resume(i, self.store.instance_id), job_id
        )
        if changed:
            self.dispatcher.wake()
            self._signal()
        return record, changed

    async def _store_move(
        self, move: Callable[[str], Awaitable[tuple[JobRecord, bool]]], job_id: str
    ) -> tuple[JobRecord, bool]:
        try:
            return await move(job_id)
        except JobNotFoundError:
            raise UnknownJob(job_id) from None

    # -- waiting -----------------------------------------------------------------------------

    async def wait(
        self, job_id: str, seconds: float, report: ProgressReporter | None = None
    ) -> tuple[JobRecord, bool]:
        """Wait until the job ends or `seconds` pass; returns (record, timed_out)."""
        return await self.waits.wait(job_id, seconds, report)

    async def wait_many(
        self,
        job_ids: Sequence[str],
        *,
        any_done: bool,
        seconds: float,
        report: Callable[[int, int], Awaitable[None]] | None = None,
    ) -> tuple[list[JobRecord], bool]:
        """Wait until all (or any) of the jobs ended, or `seconds` pass; (records, timed_out)."""
        return await self.waits.wait_many(
            job_ids, any_done=any_done, seconds=seconds, report=report
        )

    @property
    def stopping(self) -> bool:
        return self.waits.stopping

    def begin_stop(self) -> None:
        """The server is stopping: every wait answers now."""
        self.waits.begin_stop()

    async def recover_orphans(self) -> int:
        """Apply JOBS_RECOVERY to jobs whose instance is gone; returns how many were taken."""
        return await self.recoveries.recover_orphans()

    def _signal(self) -> None:
        self.waits.signal()

    def _taken_over(self) -> None:
        self.dispatcher.wake(blocked=True)
        self._signal()

    def _lost(self, job_ids: set[str]) -> None:
        """Progress saves found jobs that are no longer ours: stop them here."""
        self._tg.start_soon(self.dispatcher.check_live, sorted(job_ids))

    # -- estimates ---------------------------------------------------------------------------

    def estimate(self, record: JobRecord, difficulty: int) -> tuple[int, float | None]:
        """Expected hashes and seconds until a proof: for a waiting job, the blocks still to
        pass plus the hashing at the difficulty where it will start."""
        rate = self.pool.hashrate
        info = record.waiting_info
        if record.status is JobStatus.WAITING and info is not None:
            if info.expected_valid_block is not None and info.current_age is not None:
                data = record.job_data
                height = int(data["block_start"]) + info.current_age
                blocks = max(0, info.expected_valid_block - height)
                expected = expected_hashes(info.target_zeros or difficulty)
                return expected, blocks * self.config.block_time_seconds
            start = info.start_difficulty or difficulty
            expected = expected_hashes(min(difficulty, start))
            wait = (info.blocks_remaining or 0) * self.config.block_time_seconds
            return expected, (wait + expected / rate) if rate > 0 else None
        expected = expected_hashes(difficulty)
        return expected, (expected / rate) if rate > 0 else None

    # -- shutdown ----------------------------------------------------------------------------

    async def shutdown(self) -> None:
        """Stop intake and every job here, save their state, apply JOBS_RECOVERY. Idempotent."""
        if self._closing:
            return
        self._closing = True
        self.recoveries.closing = True
        self.begin_stop()
        self.runner.endings.closing = True
        await self.dispatcher.stop_all(StopReason.SHUTDOWN)
        with contextlib.suppress(StoreError):
            await self.writer.flush()
        await self.recoveries.leave_owned()


__all__ = ["TERMINAL", "JobManager", "LiveJob", "UnknownJob", "capacity_for"]
