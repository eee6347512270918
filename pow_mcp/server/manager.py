"""The job manager: what the tools call. Creates jobs, answers for any job, applies policy.

It ties the store, the hashing pool, the block clock, the dispatcher (which runs this
instance's jobs) and the recovery policy together. A job's creation and every status move
are store transitions, durable before the call that reports them returns; progress reaches
the store through the debounced `ProgressWriter`, and this instance shows its own running
jobs live.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import replace
from datetime import timedelta
from typing import TYPE_CHECKING

import anyio
from anyio.abc import TaskGroup

from pow_mcp.pow.difficulty import age_difficulty, expected_hashes
from pow_mcp.pow.layout import LAYOUT_LATEST
from pow_mcp.pow.pool import HashingPool, LocalPool
from pow_mcp.server.auth import CALLER
from pow_mcp.server.blocks import Anchor, BlockClock
from pow_mcp.server.config import Config, ConfigError
from pow_mcp.server.dispatcher import Dispatcher
from pow_mcp.server.planner import plan_info, preview
from pow_mcp.server.runner import LiveJob, Runner, StopReason, waiting_info
from pow_mcp.server.spec import JobInputError, JobSpec, TaskRequest, new_id
from pow_mcp.store import (
    ACTIVE,
    INTERRUPTED_ERROR,
    TERMINAL,
    JobNotFoundError,
    JobQuery,
    JobRecord,
    JobStatus,
    JobStore,
    StoreError,
    open_store,
    utc_now,
)
from pow_mcp.store.query import visible
from pow_mcp.store.record import ANY_INSTANCE, UNFINISHED, Checkpoint, Recovery
from pow_mcp.store.writer import ProgressWriter

if TYPE_CHECKING:
    from pow_mcp.pow.pool.dask import DaskPool

log = logging.getLogger(__name__)

PROGRESS_REPORT_SECONDS = 0.5
RECOVERY_SECONDS = 1.0  # orphans are looked for at least this often
ProgressReporter = Callable[[JobRecord], Awaitable[None]]


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
        self._changed = anyio.Event()  # this instance changed some job's status
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
        self._tg = task_group
        self._closing = False
        self._stopping = anyio.Event()  # the server was told to stop: waits answer at once

    async def run_background(self) -> None:
        """The dispatcher, the progress writer and recovery; run it in a task group."""
        async with anyio.create_task_group() as tg:
            tg.start_soon(self.dispatcher.run, name="dispatcher")
            tg.start_soon(self.dispatcher.watch_peers, name="watch peers")
            tg.start_soon(self.writer.run, name="progress writer")
            tg.start_soon(self._recover_forever, name="recovery")

    # -- intake ------------------------------------------------------------------------------

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
        principal = CALLER.get().principal
        await self._check_active_limit(principal, len(specs))
        deps = await self._dependencies(specs)
        now = utc_now()
        records = []
        for index, spec in enumerate(specs):
            anchor = await self._anchor_for(spec)
            created = now + timedelta(microseconds=index)  # a batch runs in its own order
            record = JobRecord(
                job_id=new_id("pow"),
                status=JobStatus.QUEUED,
                created_at=created,
                updated_at=created,
                job_data=spec.job_data(),
                owner=self.store.instance_id,
                principal=principal,
                batch_id=batch_id,
                tags=sorted(set(spec.tags) | set(tags)),
                blocked_by=[d for d in spec.depends_on if deps[d] is not JobStatus.COMPLETED],
                kernel=self.pool.kernel_name,
                checkpoint=Checkpoint(layout=LAYOUT_LATEST),  # its search order, for good
            )
            if spec.age_based:
                record = self._initial_wait(record, spec, anchor)
            records.append(record)
        if task is not None:  # the first job heads the task: its id is the job's or the batch's
            keep = None if task.ttl_seconds is None else now + timedelta(seconds=task.ttl_seconds)
            records[0] = records[0].model_copy(update={"task_id": batch_id or records[0].job_id})
            records = [r.model_copy(update={"keep_until": keep}) for r in records]
        await self.store.create(records)
        for record, spec in zip(records, specs, strict=True):
            log.info("job %s created: prefix %r, %s", record.job_id, spec.prefix, _describe(spec))
            if record.status is JobStatus.WAITING:
                self.dispatcher.start_now(record)
        self.dispatcher.wake(blocked=any(r.blocked_by for r in records))
        return records

    async def _check_active_limit(self, principal: str | None, adding: int) -> None:
        most = self.config.max_active_jobs
        active = await self.store.count(UNFINISHED, principal)
        if active + adding > most:
            who = f"principal {principal!r}" if principal else "this server"
            raise JobInputError(
                f"{who} has {active} unfinished jobs and may have at most {most} "
                "(POW_MAX_ACTIVE_JOBS): wait for some to end, or cancel some, then start again"
            )

    async def _dependencies(self, specs: Sequence[JobSpec]) -> dict[str, JobStatus]:
        wanted = sorted({d for spec in specs for d in spec.depends_on})
        found = await self.store.get_many(wanted) if wanted else {}
        missing = [d for d in wanted if d not in found]
        if missing:
            raise JobInputError(
                f"depends_on names jobs that do not exist: {', '.join(missing)}; use job_ids "
                "that start_proof_of_work returned (list_jobs shows them)"
            )
        return {job_id: record.status for job_id, record in found.items()}

    async def _anchor_for(self, spec: JobSpec) -> Anchor | None:
        if not spec.age_based:
            return None
        if spec.current_block_height is not None:
            return Anchor(spec.current_block_height, self.config.block_time_seconds)
        if self.clock.anchor is None and self.clock.url is not None:
            await self.clock.refresh()
        if self.clock.anchor is None:
            source = (
                f"BLOCK_HEIGHT_URL ({self.clock.url}) gave no height: {self.clock.last_error}"
                if self.clock.url
                else "BLOCK_HEIGHT_URL is not set"
            )
            raise JobInputError(
                f"difficulty_range needs the current block height: pass current_block_height "
                f"({source})"
            )
        return None

    def _initial_wait(self, record: JobRecord, spec: JobSpec, anchor: Anchor | None) -> JobRecord:
        """An age-based job whose difficulty is still too high starts out waiting."""
        assert spec.block_start is not None and spec.difficulty_range is not None
        source = self.clock.anchor or anchor
        assert source is not None
        height = source.now()
        difficulty = age_difficulty(height - spec.block_start, spec.difficulty_range)
        target = self.config.target_start
        if target.threshold is not None:
            if difficulty <= target.threshold:
                return record
            info = waiting_info(spec, height, difficulty, target.threshold)
        else:
            rate, block = self.pool.hashrate, self.config.block_time_seconds
            plan = preview(target, spec, record, height, rate, block)
            if plan.should_hash(height):
                return record
            info = plan_info(plan, spec, height, difficulty)
        return record.model_copy(update={"status": JobStatus.WAITING, "waiting_info": info})

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
        record = await self.get(job_id)
        last_report = 0.0
        with anyio.move_on_after(seconds):
            while not record.is_terminal and not self.stopping:
                now = time.monotonic()
                if report is not None and now - last_report >= PROGRESS_REPORT_SECONDS:
                    last_report = now
                    await report(record)
                await self.next_change([job_id])
                record = await self.get(job_id)
            if record.is_terminal:
                return record, False
        return await self.get(job_id), True

    async def wait_many(
        self,
        job_ids: Sequence[str],
        *,
        any_done: bool,
        seconds: float,
        report: Callable[[int, int], Awaitable[None]] | None = None,
    ) -> tuple[list[JobRecord], bool]:
        """Wait until all (or any) of the jobs ended, or `seconds` pass; (records, timed_out)."""
        records = [await self.get(job_id) for job_id in job_ids]
        reported = -1

        def finished() -> int:
            return sum(1 for r in records if r.is_terminal)

        with anyio.move_on_after(seconds):
            while True:
                done = finished()
                if report is not None and done != reported:
                    reported = done
                    await report(done, len(records))
                if done == len(records) or (any_done and done):
                    return records, False
                if self.stopping:
                    break
                await self.next_change(job_ids)
                records = [await self.get(job_id) for job_id in job_ids]
        return [await self.get(job_id) for job_id in job_ids], True

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    def begin_stop(self) -> None:
        """The server is stopping: every wait answers now (timed out, with the record as it
        is), so no client's wait holds the stop up for the rest of its timeout."""
        self._stopping.set()

    async def next_change(self, job_ids: Sequence[str]) -> None:
        """Return when one of these jobs may have changed (here or in another process), or
        the server is stopping."""
        waits: list[Callable[[], Awaitable[object]]] = [
            self.store.wait_for_change,
            self._changed.wait,
            self._stopping.wait,
        ]
        for job_id in job_ids:
            live = self.dispatcher.live.get(job_id)
            if live is not None:
                waits += [live.changed.wait, live.done.wait]
        async with anyio.create_task_group() as tg:
            for wait in waits:
                tg.start_soon(_then_cancel, wait, tg.cancel_scope)

    def _signal(self) -> None:
        self._changed.set()
        self._changed = anyio.Event()

    def _lost(self, job_ids: set[str]) -> None:
        """Progress saves found jobs that are no longer ours: stop them here."""
        self._tg.start_soon(self.dispatcher.check_live, sorted(job_ids))

    # -- interrupted jobs --------------------------------------------------------------------

    async def _recover_forever(self) -> None:
        while not self._closing:
            try:
                await self.recover_orphans()
            except StoreError as exc:
                log.warning("looking for interrupted jobs failed, will retry: %s", exc)
            with anyio.move_on_after(RECOVERY_SECONDS):
                await self.store.wait_for_change()

    async def recover_orphans(self) -> int:
        """Apply JOBS_RECOVERY to jobs whose instance is gone; returns how many were taken."""
        taken = 0
        for record in await self.store.orphans():
            if self._closing:
                break
            recovered = self._recovered(record)
            if await self.store.adopt(recovered, from_owner=record.owner):
                _log_recovery(record, recovered)  # once taken: a peer may have been quicker
                taken += 1
        if taken:
            self.dispatcher.wake(blocked=True)
            self._signal()
        return taken

    def _recovered(self, record: JobRecord) -> JobRecord:
        """The policy: what an interrupted job becomes. A job handed over to any instance
        was not interrupted: it is simply taken."""
        if record.owner == ANY_INSTANCE:
            return record.model_copy(update={"owner": self.store.instance_id, "waiting_info": None})
        if self.config.recovery == "fail":
            return record.model_copy(
                update={"status": JobStatus.FAILED, "error": INTERRUPTED_ERROR}
            )
        if len(record.recoveries) >= self.config.max_recoveries:
            error = (
                f"{INTERRUPTED_ERROR}; it was already resumed {len(record.recoveries)} times "
                f"(JOBS_MAX_RECOVERIES={self.config.max_recoveries}), so it is not resumed again"
            )
            return record.model_copy(update={"status": JobStatus.FAILED, "error": error})
        recoveries = [
            *record.recoveries,
            Recovery(at=utc_now(), from_status=record.status.value, hashes=record.progress.hashes),
        ]
        attempts = list(record.attempts)
        if attempts and attempts[-1].ended_at is None:
            attempts[-1] = attempts[-1].model_copy(
                update={"ended_at": record.updated_at, "outcome": "interrupted"}
            )
        return record.model_copy(
            update={
                "status": JobStatus.QUEUED,
                "owner": self.store.instance_id,
                "recoveries": recoveries,
                "attempts": attempts,
                "waiting_info": None,
            }
        )

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
        self.begin_stop()
        self.runner.closing = True
        await self.dispatcher.stop_all(StopReason.SHUTDOWN)
        with contextlib.suppress(StoreError):
            await self.writer.flush()
        try:
            mine = await self.store.owned(self.store.instance_id, ACTIVE)
        except StoreError as exc:
            log.error("could not record the jobs interrupted by this stop: %s", exc)
            return
        for record in mine:
            try:
                await self._stop_owned(record)
            except StoreError as exc:
                log.error("job %s: could not record its interruption: %s", record.job_id, exc)

    async def _stop_owned(self, record: JobRecord) -> None:
        if self.config.recovery == "resume":
            if await self.store.release(record):
                log.info(
                    "job %s left %s, to resume at the next start",
                    record.job_id,
                    JobStatus.QUEUED.value,
                )
            return
        failed = record.model_copy(update={"status": JobStatus.FAILED, "error": INTERRUPTED_ERROR})
        if await self.store.finish(failed):
            log.info("job %s: interrupted by the shutdown; marked failed", record.job_id)


def _log_recovery(before: JobRecord, after: JobRecord) -> None:
    """What the recovery policy did to a job this instance took over."""
    owner = before.owner or "(none)"
    if before.owner == ANY_INSTANCE:
        log.info("job %s: taken over to run here", before.job_id)
    elif after.status is JobStatus.FAILED and after.error == INTERRUPTED_ERROR:
        log.warning(
            "job %s: was %s when its server instance %s stopped; marked failed",
            before.job_id,
            before.status.value,
            owner,
        )
    elif after.status is JobStatus.FAILED:
        log.warning("job %s: %s", before.job_id, after.error)
    else:
        log.info(
            "job %s: resumed here from its checkpoint (%d hashes) after instance %s stopped",
            before.job_id,
            before.progress.hashes,
            owner,
        )


async def _then_cancel(wait: Callable[[], Awaitable[object]], scope: anyio.CancelScope) -> None:
    await wait()
    scope.cancel()


def _describe(spec: JobSpec) -> str:
    if spec.age_based:
        return f"age-based, range {spec.difficulty_range:g} from block {spec.block_start}"
    return (
        f"difficulty {spec.difficulty}, {expected_hashes(spec.difficulty or 0):,} hashes expected"
    )


@asynccontextmanager
async def open_manager(config: Config) -> AsyncIterator[JobManager]:
    """Store, pool, block clock, dispatcher and periodic cleanup, while the server runs."""
    async with (
        open_cluster(config) as cluster,
        open_store(config.store) as store,
        open_pool(config, cluster) as pool,
        anyio.create_task_group() as tg,
    ):
        clock = BlockClock(config.block_height_url, config.block_time_seconds)
        manager = JobManager(config, store, pool, clock, tg)
        await manager.recover_orphans()  # before any client sees the jobs
        tg.start_soon(clock.run, name="block clock")
        tg.start_soon(manager.run_background, name="jobs")
        tg.start_soon(
            _cleanup_forever,
            manager,
            config.retention_seconds,
            min(60.0, max(1.0, config.retention_seconds / 10)),
            name="cleanup",
        )
        try:
            yield manager
        finally:
            with anyio.CancelScope(shield=True):
                await manager.shutdown()
            tg.cancel_scope.cancel()


@asynccontextmanager
async def open_cluster(config: Config) -> AsyncIterator[DaskPool | None]:
    """With POW_CLUSTER, the Dask cluster's pool, connected before the store opens: an
    unreachable cluster is then a one-line ConfigError, not one wrapped by the store's task
    group. None without POW_CLUSTER."""
    if config.cluster is None:
        yield None
        return
    try:  # only here: the optional extra, and a third of a second to import
        from pow_mcp.pow.pool.dask import ClusterError, DaskPool
    except ImportError as exc:
        raise ConfigError(
            f"POW_CLUSTER={config.cluster} needs Dask, pow-mcp's dask extra: in its checkout, "
            f"pip install '.[dask]' (or unset POW_CLUSTER to hash on this machine) ({exc})"
        ) from None
    # Dask logs every connection, worker and client at INFO; the server's log keeps its
    # warnings, and the pool says itself what matters (workers joining, leaving, outages).
    logging.getLogger("distributed").setLevel(logging.WARNING)
    try:
        async with DaskPool.connect(
            config.cluster,
            workers=config.workers,
            kernel=config.kernel,
            cluster_timeout=config.cluster_timeout_seconds,
            connect_timeout=min(10.0, max(1.0, config.cluster_timeout_seconds)),
        ) as pool:
            yield pool
    except ClusterError as exc:  # raised only at start-up: one line, naming the fix
        raise ConfigError(str(exc)) from None


@asynccontextmanager
async def open_pool(config: Config, cluster: DaskPool | None) -> AsyncIterator[HashingPool]:
    """The Dask cluster's pool delivering on this loop, or else the local worker pool."""
    if cluster is not None:
        async with cluster.delivering() as pool:
            yield pool
    else:
        async with LocalPool.open(config.workers, config.kernel) as local:
            yield local


async def _cleanup_forever(manager: JobManager, retention: float, interval: float) -> None:
    """The retention period, applied every `interval` seconds; a failed pass is retried."""
    while True:
        try:
            for job_id in await manager.cleanup(retention):
                log.info("job %s: removed by the periodic cleanup", job_id)
        except StoreError as exc:
            log.warning("periodic cleanup of old jobs failed, will retry: %s", exc)
        await anyio.sleep(interval)


__all__ = [
    "TERMINAL",
    "JobManager",
    "LiveJob",
    "UnknownJob",
    "capacity_for",
    "open_cluster",
    "open_manager",
    "open_pool",
]
