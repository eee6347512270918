"""The job manager: validates, records, queues and drives jobs through their statuses.

Ties the worker pool, the store and the block clock together. Every status a client can see
comes from the store, and a job's creation and its terminal status are on disk before the
call that reports them returns.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
import string
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

import anyio
from anyio.abc import TaskGroup

from pow.difficulty import (
    age_difficulty,
    eta_seconds,
    expected_hashes,
    first_valid_age,
    valid_from_block,
)
from pow.pool import AsyncWorkerPool
from pow.scheduler import Outcome, OutcomeKind, Priority, Progress, SearchTask
from pow.scheme import ActionType, structs_prefix, validate_prefix
from server.blocks import Anchor, BlockClock
from server.config import Config
from store import JobStore, open_store
from store.record import (
    INTERRUPTED_ERROR,
    JobRecord,
    JobResult,
    JobStatus,
    ProofOfWork,
    WaitingInfo,
)
from store.record import Progress as JobProgress
from store.record import utc_now as utcnow

log = logging.getLogger(__name__)

FOREIGN_POLL_SECONDS = 0.5  # another process's job has no events here: re-read the file
PROGRESS_REPORT_SECONDS = 0.5
_BASE36 = string.digits + string.ascii_lowercase


class JobInputError(ValueError):
    """Arguments that cannot make a job; the message says what to change."""


class UnknownJob(LookupError):
    pass


def new_job_id() -> str:
    """pow_<unix ms>_<10 random base36 characters from a CSPRNG>."""
    suffix = "".join(secrets.choice(_BASE36) for _ in range(10))
    return f"pow_{int(time.time() * 1000)}_{suffix}"


@dataclass(frozen=True)
class JobSpec:
    """A validated request for a proof: what to hash and how hard."""

    prefix: str
    difficulty: int | None = None
    difficulty_range: float | None = None
    block_start: int | None = None
    current_block_height: int | None = None
    action_type: str | None = None
    entity_id: str | None = None
    target_id: str | None = None
    max_iterations: int | None = None
    priority: str = "normal"
    timeout_seconds: float | None = None
    player_id: str | None = None
    label: str | None = None

    @property
    def age_based(self) -> bool:
        return self.difficulty_range is not None

    def job_data(self) -> dict[str, Any]:
        return {key: value for key, value in asdict(self).items() if value is not None}


def message_prefix(
    prefix: str | None,
    action_type: str | None,
    entity_id: str | None,
    block_start: int | None,
    target_id: str | None,
) -> str:
    """The text hashed before the nonce, from either input form; JobInputError if neither."""
    structs_args = {
        "action_type": action_type,
        "entity_id": entity_id,
        "target_id": target_id,
    }
    if prefix is not None:
        given = [name for name, value in structs_args.items() if value is not None]
        if given:
            raise JobInputError(
                f"give either prefix (generic) or action_type + entity_id + block_start "
                f"(Structs), not both: remove {', '.join(given)} or prefix"
            )
        try:
            return validate_prefix(prefix)
        except ValueError as exc:
            raise JobInputError(str(exc)) from None
    missing = [n for n in ("action_type", "entity_id") if structs_args[n] is None]
    if block_start is None:
        missing.append("block_start")
    if missing:
        raise JobInputError(
            "no message to hash: give prefix (e.g. 'abc-'), or action_type, entity_id and "
            f"block_start for a Structs proof (missing: {', '.join(missing)})"
        )
    assert action_type is not None and entity_id is not None and block_start is not None
    try:
        return structs_prefix(ActionType(action_type), entity_id, block_start, target_id)
    except ValueError as exc:
        raise JobInputError(str(exc)) from None


def check_difficulty_choice(
    difficulty: int | None,
    difficulty_range: float | None,
    block_start: int | None,
) -> None:
    if (difficulty is None) == (difficulty_range is None):
        raise JobInputError(
            "give exactly one of difficulty (fixed leading zeros, e.g. 5) or difficulty_range "
            "(Structs age-based, e.g. 1800, with block_start and current_block_height)"
        )
    if difficulty_range is not None and block_start is None:
        raise JobInputError("difficulty_range needs block_start: the block the action started")


@dataclass
class _Job:
    """A job this process is running."""

    record: JobRecord
    spec: JobSpec
    anchor: Anchor | None = None
    difficulty: int = 0
    height: int = 0  # the block height `difficulty` was computed at (age-based jobs)
    cancel_requested: bool = False
    interrupted: bool = False  # the server is stopping
    scope: anyio.CancelScope = field(default_factory=anyio.CancelScope)
    done: anyio.Event = field(default_factory=anyio.Event)
    changed: anyio.Event = field(default_factory=anyio.Event)
    dirty: anyio.Event = field(default_factory=anyio.Event)

    def notify(self) -> None:
        self.changed.set()
        self.changed = anyio.Event()


ProgressReporter = Callable[[JobRecord], Awaitable[None]]


class JobManager:
    def __init__(
        self,
        config: Config,
        store: JobStore,
        pool: AsyncWorkerPool,
        clock: BlockClock,
        task_group: TaskGroup,
    ) -> None:
        self.config, self.store, self.pool, self.clock = config, store, pool, clock
        self._tg = task_group
        self._jobs: dict[str, _Job] = {}
        self._closing = False

    # -- intake ------------------------------------------------------------------------------

    async def start(self, spec: JobSpec) -> tuple[JobRecord, int]:
        """Record the job durably and queue it; returns the record and its difficulty now."""
        if self._closing:
            raise JobInputError("the server is shutting down; start the job again after restart")
        anchor = await self._anchor_for(spec)
        difficulty = spec.difficulty or 0
        now = utcnow()
        record = JobRecord(
            job_id=new_job_id(),
            status=JobStatus.QUEUED,
            created_at=now,
            updated_at=now,
            job_data=spec.job_data(),
            progress=JobProgress(),
            owner=self.store.instance_id,
            kernel=self.pool.kernel_name,
        )
        job = _Job(record, spec, anchor, difficulty)
        if spec.age_based:
            difficulty = self._update_difficulty(job)
            if difficulty > self.config.target_difficulty_start:
                job.record = record = self._waiting(job, now)
        await self.store.create(record)
        self._jobs[record.job_id] = job
        self._tg.start_soon(self._drive, job, name=f"job {record.job_id}")
        log.info("job %s created: prefix %r, %s", record.job_id, spec.prefix, _describe(spec))
        return record, difficulty

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

    # -- queries -----------------------------------------------------------------------------

    async def get(self, job_id: str) -> JobRecord:
        record = await self.store.get(job_id)
        if record is None:
            raise UnknownJob(job_id)
        return record

    async def list_jobs(
        self, status: JobStatus | None, limit: int, offset: int
    ) -> tuple[list[JobRecord], int]:
        return await self.store.list(status=status, limit=limit, offset=offset)

    async def cleanup(self, max_age_seconds: float) -> list[str]:
        return await self.store.delete_terminal_older_than(max_age_seconds)

    async def cancel(self, job_id: str) -> tuple[JobRecord, bool]:
        """Stop a job; returns its final record and whether this call cancelled it."""
        job = self._jobs.get(job_id)
        if job is None:
            return await self._cancel_foreign(await self.get(job_id))
        job.cancel_requested = True
        self.pool.cancel(job_id)
        job.scope.cancel()
        await job.done.wait()
        return job.record, job.record.status is JobStatus.CANCELLED

    async def _cancel_foreign(self, record: JobRecord) -> tuple[JobRecord, bool]:
        """A job this process does not run: ended, run by a live peer, or orphaned."""
        if record.is_terminal:
            return record, False
        if await self.store.owner_alive(record.owner):
            raise JobInputError(
                f"job {record.job_id} is being run by another pow-mcp process (instance "
                f"{record.owner}); cancel it through the client connected to that server"
            )
        # Its server died; nothing hashes it any more, so recording the cancel is all there is.
        now = utcnow()
        cancelled = record.model_copy(
            update={"status": JobStatus.CANCELLED, "completed_at": now, "updated_at": now}
        )
        await self.store.update(cancelled)
        log.info("job %s of the stopped instance %s cancelled", record.job_id, record.owner)
        return cancelled, True

    async def wait(
        self, job_id: str, seconds: float, report: ProgressReporter | None = None
    ) -> tuple[JobRecord, bool]:
        """Wait until the job ends or `seconds` pass; returns (record, timed_out)."""
        record = await self.get(job_id)
        job = self._jobs.get(job_id)
        with anyio.move_on_after(seconds):
            if job is None:
                while not record.is_terminal:  # another process's job: no events here
                    await anyio.sleep(FOREIGN_POLL_SECONDS)
                    record = await self.get(job_id)
                return record, False
            last_report = 0.0
            while not job.done.is_set():
                changed = job.changed
                now = time.monotonic()
                if report is not None and now - last_report >= PROGRESS_REPORT_SECONDS:
                    last_report = now
                    await report(job.record)
                await changed.wait()
            return job.record, False
        return (job.record if job else record), True

    # -- driving a job -----------------------------------------------------------------------

    async def _drive(self, job: _Job) -> None:
        job_id = job.record.job_id
        try:
            await self._run(job)
        except anyio.get_cancelled_exc_class():
            with anyio.CancelScope(shield=True):  # the server is stopping
                await self._finish(job, JobStatus.FAILED, error=INTERRUPTED_ERROR)
            raise
        except Exception:
            # One job's failure must never take the server (or other jobs) down with it.
            log.exception("job %s failed unexpectedly", job_id)
            try:
                error = "internal error while running the job; the server log has details"
                await self._finish(job, JobStatus.FAILED, error=error)
            except Exception:
                log.exception("job %s: could not record its failure", job_id)
                self._jobs.pop(job_id, None)
                job.done.set()
        log.info("job %s ended: %s", job_id, job.record.status.value)

    async def _run(self, job: _Job) -> None:
        outcome: Outcome | None = None
        with job.scope:
            with anyio.move_on_after(job.spec.timeout_seconds or float("inf")) as limit:
                if job.spec.age_based:
                    await self._wait_until_startable(job)
                outcome = await self._hash(job)
        if outcome is not None:
            await self._conclude(job, outcome)
        elif job.interrupted:
            await self._finish(job, JobStatus.FAILED, error=INTERRUPTED_ERROR)
        elif limit.cancelled_caught and not job.cancel_requested:
            error = f"Job timed out after {job.spec.timeout_seconds:g} seconds without a proof"
            await self._finish(job, JobStatus.FAILED, error=error)
        else:
            await self._finish(job, JobStatus.CANCELLED)

    async def _wait_until_startable(self, job: _Job) -> None:
        while True:
            if self._update_difficulty(job) <= self.config.target_difficulty_start:
                return
            job.record = self._waiting(job, utcnow())
            await self.store.update(job.record)
            job.notify()
            await self._next_block(job)

    async def _hash(self, job: _Job) -> Outcome:
        spec, job_id = job.spec, job.record.job_id
        now = utcnow()
        job.record = job.record.model_copy(
            update={"status": JobStatus.RUNNING, "started_at": now, "updated_at": now}
        )
        await self.store.update(job.record)
        job.notify()
        task = SearchTask(
            spec.prefix,
            job.difficulty,
            Priority[spec.priority.upper()],
            max_iterations=spec.max_iterations,
        )
        log.info("job %s hashing at difficulty %d", job_id, job.difficulty)
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._save_progress, job)
            if spec.age_based:
                tg.start_soon(self._follow_blocks, job)
            outcome = await self.pool.run(job_id, task, lambda p: self._on_progress(job, p))
            tg.cancel_scope.cancel()
        return outcome

    def _on_progress(self, job: _Job, p: Progress) -> None:
        job.record = job.record.model_copy(
            update={
                "progress": JobProgress(
                    hashes=p.hashes,
                    hashrate=round(p.hashrate, 1),
                    best_zeros=p.best_zeros,
                    eta_seconds=_round(eta_seconds(job.difficulty, p.hashes, p.hashrate)),
                ),
                "checkpoint": p.checkpoint,
                "updated_at": utcnow(),
            }
        )
        job.dirty.set()
        job.notify()

    async def _save_progress(self, job: _Job) -> None:
        # Progress only rides along with the store's next debounced write.
        while True:
            await job.dirty.wait()
            job.dirty = anyio.Event()
            await self.store.update(job.record)

    async def _follow_blocks(self, job: _Job) -> None:
        while True:
            await self._next_block(job)
            before = job.difficulty
            difficulty = self._update_difficulty(job)
            if difficulty != before:
                log.info("job %s difficulty now %d", job.record.job_id, difficulty)
                job.record = job.record.model_copy(update={"waiting_info": self._waiting_info(job)})
                job.dirty.set()
                self.pool.set_difficulty(job.record.job_id, difficulty)

    async def _conclude(self, job: _Job, outcome: Outcome) -> None:
        p = outcome.progress  # the final count, even if the job ended within its first chunk
        job.record = job.record.model_copy(
            update={
                "progress": JobProgress(
                    hashes=p.hashes, hashrate=round(p.hashrate, 1), best_zeros=p.best_zeros
                ),
                "checkpoint": p.checkpoint,
            }
        )
        if outcome.kind is OutcomeKind.FOUND:
            assert outcome.nonce is not None and outcome.hash is not None
            started = job.record.started_at or job.record.created_at or utcnow()
            proof = ProofOfWork(
                hash=outcome.hash,
                nonce=str(outcome.nonce),
                iterations=outcome.progress.hashes,
                valid=True,
                difficulty_met=outcome.zeros,
                difficulty=job.difficulty,
                computation_time_ms=round((utcnow() - started).total_seconds() * 1000),
            )
            valid_from = None
            if job.spec.age_based:
                assert job.spec.block_start is not None and job.spec.difficulty_range is not None
                valid_from = valid_from_block(
                    job.spec.block_start, outcome.zeros, job.spec.difficulty_range
                )
            await self._finish(
                job,
                JobStatus.COMPLETED,
                result=JobResult(proof_of_work=proof),
                valid_from_block=valid_from,
            )
        elif outcome.kind is OutcomeKind.CANCELLED:
            await self._finish(job, JobStatus.CANCELLED)
        else:
            await self._finish(job, JobStatus.FAILED, error=outcome.error)

    async def _finish(self, job: _Job, status: JobStatus, **fields: Any) -> None:
        if job.done.is_set():
            return
        now = utcnow()
        job.record = job.record.model_copy(
            update={"status": status, "completed_at": now, "updated_at": now, **fields}
        )
        await self.store.update(job.record)  # terminal: durable before we go on
        self._jobs.pop(job.record.job_id, None)
        job.done.set()
        job.notify()

    def estimate(self, record: JobRecord, difficulty: int) -> tuple[int, float | None]:
        """Expected hashes and seconds until a proof: for a waiting job, the blocks still to
        pass plus the hashing at the difficulty where it will start."""
        rate = self.pool.hashrate
        if record.status is JobStatus.WAITING and record.waiting_info is not None:
            expected = expected_hashes(min(difficulty, self.config.target_difficulty_start))
            blocks = record.waiting_info.blocks_remaining or 0
            wait = blocks * self.config.block_time_seconds
            return expected, (wait + expected / rate) if rate > 0 else None
        expected = expected_hashes(difficulty)
        return expected, (expected / rate) if rate > 0 else None

    # -- age-based difficulty ----------------------------------------------------------------

    def _source(self, job: _Job) -> Anchor:
        """The polled chain height when there is one, else the height the job was given."""
        source = self.clock.anchor or job.anchor
        assert source is not None  # start() refuses an age-based job with neither
        return source

    def _update_difficulty(self, job: _Job) -> int:
        """Read the height once; the job's age difficulty follows from it."""
        spec = job.spec
        assert spec.block_start is not None and spec.difficulty_range is not None
        job.height = self._source(job).now()
        job.difficulty = age_difficulty(job.height - spec.block_start, spec.difficulty_range)
        return job.difficulty

    def _waiting_info(self, job: _Job) -> WaitingInfo:
        spec = job.spec
        assert spec.block_start is not None and spec.difficulty_range is not None
        start = self.config.target_difficulty_start
        start_age = first_valid_age(start, spec.difficulty_range) or 0
        return WaitingInfo(
            current_age=job.height - spec.block_start,
            current_difficulty=job.difficulty,
            start_difficulty=start,
            blocks_remaining=max(0, spec.block_start + start_age - job.height),
        )

    def _waiting(self, job: _Job, now: datetime) -> JobRecord:
        return job.record.model_copy(
            update={
                "status": JobStatus.WAITING,
                "updated_at": now,
                "waiting_info": self._waiting_info(job),
            }
        )

    async def _next_block(self, job: _Job) -> None:
        """Sleep until the extrapolated height moves on, or a poll brings a new one."""
        source = self._source(job)
        with anyio.move_on_after(source.seconds_until(source.now() + 1)):
            await self.clock.wait_changed()

    # -- shutdown ----------------------------------------------------------------------------

    async def shutdown(self) -> None:
        """Stop intake, record every job still running as interrupted, flush. Idempotent."""
        self._closing = True
        jobs = list(self._jobs.values())
        for job in jobs:
            job.interrupted = True
            with contextlib.suppress(RuntimeError):  # the pool may already be closed
                self.pool.cancel(job.record.job_id)
            job.scope.cancel()
        for job in jobs:
            await job.done.wait()
        await self.store.flush()


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


def _describe(spec: JobSpec) -> str:
    if spec.age_based:
        return f"age-based, range {spec.difficulty_range:g} from block {spec.block_start}"
    return (
        f"difficulty {spec.difficulty}, {expected_hashes(spec.difficulty or 0):,} hashes expected"
    )


@asynccontextmanager
async def open_manager(config: Config) -> AsyncIterator[JobManager]:
    """Store, pool, block clock and periodic cleanup, for as long as the server runs."""
    async with (
        open_store(
            config.data_dir,
            persist=config.persist,
            debounce_seconds=config.save_debounce_seconds,
        ) as store,
        AsyncWorkerPool.open(config.workers, config.kernel) as pool,
        anyio.create_task_group() as tg,
    ):
        clock = BlockClock(config.block_height_url, config.block_time_seconds)
        manager = JobManager(config, store, pool, clock, tg)
        tg.start_soon(clock.run, name="block clock")
        tg.start_soon(
            store.run_cleanup,
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
