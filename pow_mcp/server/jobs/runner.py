"""One attempt at one job on this instance: wait for its block, hash, and record the end.

The runner owns the job while it runs: it alone writes the job's body (progress,
checkpoint, result). Every status move is one store transition (`store.transitions`);
moves made elsewhere (a cancel or pause from another instance, a peer recovering the job)
reach it as a `StopReason`, and it stops hashing within one chunk.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import timedelta
from enum import StrEnum

import anyio

from pow_mcp.pow.difficulty import age_difficulty, eta_seconds, first_valid_age, valid_from_block
from pow_mcp.pow.layout import LAYOUT_LATEST
from pow_mcp.pow.pool.base import HashingPool
from pow_mcp.pow.scheduler import Best, Checkpoint, Outcome, OutcomeKind, Progress, SearchTask
from pow_mcp.server.config import Config
from pow_mcp.server.jobs.blocks import Anchor, BlockClock
from pow_mcp.server.jobs.planner import Planner, plan_info
from pow_mcp.server.jobs.spec import JobSpec
from pow_mcp.store import JobRecord, JobStatus, JobStore, StoreError, StoreWriteError, utc_now
from pow_mcp.store.record import (
    ACTIVE,
    INTERRUPTED_ERROR,
    Attempt,
    JobResult,
    ProofOfWork,
    WaitingInfo,
)
from pow_mcp.store.record import Checkpoint as StoredCheckpoint
from pow_mcp.store.record import Progress as JobProgress
from pow_mcp.store.writer import ProgressWriter

log = logging.getLogger(__name__)

FINISH_RETRY_SECONDS = (0.5, 1.0, 2.0, 5.0)  # backoff while a proof cannot be saved
SHUTDOWN_FINISH_SECONDS = 10.0  # how long a stopping server keeps trying to save a result
INTERNAL_ERROR = "internal error while running the job; the server log has details"


class StopReason(StrEnum):
    CANCEL = "cancel"  # cancelled (already in the store): drop the work
    PAUSE = "pause"  # paused (already in the store): stop cleanly, keep the checkpoint
    SHUTDOWN = "shutdown"  # this server stops: JOBS_RECOVERY decides
    LOST = "lost"  # not this instance's job any more: drop it, write nothing


class RetryableError(Exception):
    """An attempt failed for a reason outside the job (max_retries applies)."""


@dataclass(eq=False)
class LiveJob:
    """A job this instance runs, as it is right now (newer than the store's copy)."""

    record: JobRecord
    spec: JobSpec
    anchor: Anchor | None = None  # the height given with the job, extrapolated
    difficulty: int = 0
    height: int = 0
    hashing: bool = False
    fault: str | None = None  # why the attempt must end as a (retryable) failure
    stop: StopReason | None = None
    stop_requested: anyio.Event = field(default_factory=anyio.Event)
    done: anyio.Event = field(default_factory=anyio.Event)
    changed: anyio.Event = field(default_factory=anyio.Event)

    @property
    def job_id(self) -> str:
        return self.record.job_id

    def request_stop(self, reason: StopReason) -> None:
        if self.stop is None or reason is StopReason.CANCEL:
            self.stop = reason
        self.stop_requested.set()

    def notify(self) -> None:
        self.changed.set()
        self.changed = anyio.Event()


def anchor_for(record: JobRecord, spec: JobSpec, block_time: float) -> Anchor | None:
    """The height the job was started with, extrapolated from its creation (any restart)."""
    if spec.current_block_height is None:
        return None
    age = (utc_now() - record.created_at).total_seconds()
    return Anchor(spec.current_block_height, block_time, at=time.monotonic() - max(0.0, age))


def _close_dangling(record: JobRecord) -> list[Attempt]:
    """The attempts, the last one ended if it never was: its job was paused and resumed here
    before the instance that ran it could record the pause (it was gone, or too late)."""
    attempts = list(record.attempts)
    if attempts and attempts[-1].ended_at is None:
        last = attempts[-1]
        attempts[-1] = last.model_copy(
            update={
                "ended_at": record.updated_at,  # the resume: the pause came no later
                "outcome": "paused",
                "hashes": record.progress.hashes - last.hashes,
            }
        )
    return attempts


class Runner:
    """Runs attempts of jobs; one instance per manager, one `run` call per attempt."""

    def __init__(
        self,
        config: Config,
        store: JobStore,
        pool: HashingPool,
        clock: BlockClock,
        writer: ProgressWriter,
    ) -> None:
        self.config, self.store, self.pool, self.clock = config, store, pool, clock
        self.writer = writer
        start = config.target_start
        self.planner = Planner(start, pool, config.block_time_seconds) if start.auto else None
        self.closing = False

    async def run(self, job: LiveJob) -> None:
        """Run the job until this attempt ends; never raises (but for cancellation)."""
        try:
            await self._run(job)
        except RetryableError as exc:
            await self._attempt_failed(job, str(exc))
        except StoreError as exc:
            log.warning("job %s: the job store failed during the attempt: %s", job.job_id, exc)
            await self._attempt_failed(job, f"the job store failed: {exc}")
        except Exception:
            log.exception("job %s: failed unexpectedly", job.job_id)
            await self._attempt_failed(job, INTERNAL_ERROR)
        finally:
            if self.planner is not None:
                self.planner.leave(job.job_id)
            self.writer.discard(job.job_id)
            job.done.set()
            job.notify()

    # -- the attempt -------------------------------------------------------------------------

    async def _run(self, job: LiveJob) -> None:
        attempt = Attempt(
            started_at=utc_now(), hashes=job.record.progress.hashes, instance=self.store.instance_id
        )
        attempts = [*_close_dangling(job.record), attempt]
        job.record = job.record.model_copy(update={"attempts": attempts, "run_after": None})
        if job.spec.age_based and not await self._wait_until_startable(job):
            return
        if job.stop is not None:
            return
        now = utc_now()
        running = job.record.model_copy(
            update={
                "status": JobStatus.RUNNING,
                "started_at": job.record.started_at or now,
                "waiting_info": self._waiting_info(job) if job.spec.age_based else None,
            }
        )
        if not await self.store.claim(running):
            log.info("job %s: not started: it was changed elsewhere", job.job_id)
            return
        job.record = running
        job.notify()
        outcome, timed_out = await self._hash(job)
        await self._conclude(job, outcome, timed_out)

    async def _hash(self, job: LiveJob) -> tuple[Outcome, bool]:
        spec, record = job.spec, job.record
        if spec.age_based:
            self._update_difficulty(job)
        else:
            assert spec.difficulty is not None
            job.difficulty = spec.difficulty
        task = SearchTask(
            spec.prefix,
            job.difficulty,
            spec.rank,
            max_iterations=spec.max_iterations,
            checkpoint=_pool_checkpoint(record),
            hashes=record.progress.hashes,
            best=_best(record),
            layout=layout_of(record),
        )
        log.info("job %s hashing at difficulty %d", job.job_id, job.difficulty)
        budget = float("inf")
        if spec.timeout_seconds is not None:
            budget = max(0.0, spec.timeout_seconds - record.run_seconds)
        began, base_seconds = time.monotonic(), record.run_seconds
        timed_out = False

        def on_progress(p: Progress) -> None:
            self._progress(job, p, base_seconds + time.monotonic() - began)

        job.hashing = True
        handle = self.pool.submit(job.job_id, task, on_progress)
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._watch_stop, job)
                if spec.age_based:
                    tg.start_soon(self._follow_blocks, job)
                with anyio.move_on_after(budget) as limit:
                    outcome = await handle.wait()
                if limit.cancelled_caught:
                    timed_out = True
                    self.pool.cancel(job.job_id)
                    outcome = await handle.wait()
                tg.cancel_scope.cancel()
        finally:
            job.hashing = False
            if handle.outcome is None:  # cancelled from outside: never leave it hashing
                self.pool.cancel(job.job_id)
        self._progress(job, outcome.progress, base_seconds + time.monotonic() - began)
        return outcome, timed_out

    async def _watch_stop(self, job: LiveJob) -> None:
        await job.stop_requested.wait()
        if job.stop in (StopReason.PAUSE, StopReason.SHUTDOWN) or job.fault is not None:
            self.pool.stop(job.job_id)  # the chunks out come back: nothing is hashed twice
        else:
            self.pool.cancel(job.job_id)

    async def _follow_blocks(self, job: LiveJob) -> None:
        while True:
            await self._next_block(job)
            fault = self._source_fault(job)
            if fault is not None:  # end the attempt cleanly, keeping its checkpoint
                job.fault = fault
                job.stop_requested.set()
                return
            before = job.difficulty
            difficulty = self._update_difficulty(job)
            if difficulty != before:
                log.info("job %s: difficulty now %d", job.job_id, difficulty)
                job.record = job.record.model_copy(update={"waiting_info": self._waiting_info(job)})
                self.pool.set_difficulty(job.job_id, difficulty)

    def _progress(self, job: LiveJob, p: Progress, run_seconds: float) -> None:
        spec = job.spec
        best_valid = None
        if spec.age_based and p.best_zeros > 0:
            assert spec.block_start is not None and spec.difficulty_range is not None
            best_valid = valid_from_block(spec.block_start, p.best_zeros, spec.difficulty_range)
        job.record = job.record.model_copy(
            update={
                "progress": JobProgress(
                    hashes=p.hashes,
                    hashrate=round(p.hashrate, 1),
                    best_zeros=p.best_zeros,
                    eta_seconds=_round(eta_seconds(job.difficulty, p.hashes, p.hashrate)),
                    best_nonce=None if p.best_nonce is None else str(p.best_nonce),
                    best_hash=p.best_hash,
                    note=p.note,  # e.g. a cluster pool waiting for its cluster
                ),
                "checkpoint": StoredCheckpoint(
                    layout=layout_of(job.record),
                    position=p.checkpoint.position,
                    in_flight=list(p.checkpoint.pending),
                ),
                "run_seconds": round(run_seconds, 3),
                "valid_from_block": best_valid,
                "updated_at": utc_now(),
            }
        )
        self.writer.put(job.record)
        job.notify()

    # -- how an attempt ends -----------------------------------------------------------------

    async def _conclude(self, job: LiveJob, outcome: Outcome, timed_out: bool) -> None:
        if outcome.kind is OutcomeKind.FOUND:
            await self._found(job, outcome)
        elif job.fault is not None and job.stop is None:
            raise RetryableError(job.fault)
        elif timed_out:
            limit = job.spec.timeout_seconds
            await self._finish(
                job, JobStatus.FAILED, f"Job timed out after {limit:g} seconds without a proof"
            )
        elif outcome.kind is OutcomeKind.EXHAUSTED:
            await self._finish(job, JobStatus.FAILED, outcome.error)
        elif outcome.kind is OutcomeKind.FAILED and job.stop is None:
            raise RetryableError(outcome.error or "the worker pool failed")
        elif job.stop is StopReason.PAUSE:
            await self._save_paused(job)
        elif job.stop is StopReason.SHUTDOWN or outcome.kind is OutcomeKind.FAILED:
            await self._interrupted(job)
        # CANCEL and LOST: the store already says what happened; nothing to write.

    async def _found(self, job: LiveJob, outcome: Outcome) -> None:
        assert outcome.nonce is not None and outcome.hash is not None
        spec, record = job.spec, job.record
        started = record.started_at or record.created_at
        proof = ProofOfWork(
            hash=outcome.hash,
            nonce=str(outcome.nonce),
            iterations=outcome.progress.hashes,
            valid=True,
            difficulty_met=outcome.zeros,
            difficulty=job.difficulty,
            computation_time_ms=round((utc_now() - started).total_seconds() * 1000),
        )
        valid_from = None
        if spec.age_based:
            assert spec.block_start is not None and spec.difficulty_range is not None
            valid_from = valid_from_block(spec.block_start, outcome.zeros, spec.difficulty_range)
        job.record = record.model_copy(
            update={"result": JobResult(proof_of_work=proof), "valid_from_block": valid_from}
        )
        await self._finish(job, JobStatus.COMPLETED, None)

    async def _finish(self, job: LiveJob, status: JobStatus, error: str | None) -> None:
        """End the job; retried until it is on disk (a found proof is never dropped)."""
        final = self._end_attempt(job, status.value, error).model_copy(
            update={"status": status, "error": error, "waiting_info": None}
        )
        final.progress = final.progress.model_copy(update={"eta_seconds": None, "note": None})
        deadline = None
        for attempt in range(1_000_000):
            try:
                won = await self.store.finish(final)
                break
            except StoreWriteError as exc:
                if self.closing:
                    deadline = deadline or time.monotonic() + SHUTDOWN_FINISH_SECONDS
                    if time.monotonic() > deadline:
                        log.error(
                            "job %s: could not save its end (%s) before stopping: %s; result %s",
                            job.job_id,
                            status.value,
                            exc,
                            final.result.model_dump_json() if final.result else "none",
                        )
                        return
                delay = FINISH_RETRY_SECONDS[min(attempt, len(FINISH_RETRY_SECONDS) - 1)]
                log.warning(
                    "job %s: saving its end (%s) failed, retrying in %g s: %s",
                    job.job_id,
                    status.value,
                    delay,
                    exc,
                )
                job.record.progress = job.record.progress.model_copy(
                    update={"note": f"{status.value}; saving that failed ({exc}), retrying"}
                )
                job.notify()
                await anyio.sleep(delay)
        if won:
            job.record = (await self.store.get(job.job_id)) or final
            log.info("job %s ended: %s%s", job.job_id, status.value, f" ({error})" * bool(error))
        else:
            log.info(
                "job %s: its end (%s) was not recorded: it ended elsewhere",
                job.job_id,
                status.value,
            )

    async def _save_paused(self, job: LiveJob) -> None:
        record = self._end_attempt(job, "paused", None)
        lost = await self.store.save_progress([record])
        if not lost:
            job.record = record
            log.info("job %s paused at %d hashes", job.job_id, record.progress.hashes)

    async def _interrupted(self, job: LiveJob) -> None:
        if self.config.recovery == "resume":
            record = self._end_attempt(job, "interrupted", None)
            if await self.store.release(record):
                job.record = record
                log.info(
                    "job %s left queued with its checkpoint, to resume at the next start",
                    job.job_id,
                )
            return
        await self._finish(job, JobStatus.FAILED, INTERRUPTED_ERROR)

    async def _attempt_failed(self, job: LiveJob, error: str) -> None:
        """A failure outside the job's own limits: retry after the delay, or fail."""
        if job.stop is not None:
            return
        retried = sum(1 for a in job.record.attempts if a.outcome == "retried")
        try:
            if job.record.status not in ACTIVE or retried >= job.spec.max_retries:
                await self._finish(job, JobStatus.FAILED, error)
                return
            delay = job.spec.retry_delay_seconds
            record = self._end_attempt(job, "retried", error).model_copy(
                update={"run_after": utc_now() + timedelta(seconds=delay)}
            )
            if await self.store.requeue(record):
                job.record = record.model_copy(update={"status": JobStatus.QUEUED})
                log.warning(
                    "job %s: attempt %d failed (%s); retrying in %g s",
                    job.job_id,
                    len(record.attempts),
                    error,
                    delay,
                )
        except StoreError as exc:
            log.error("job %s: could not record the failed attempt: %s", job.job_id, exc)

    def _end_attempt(self, job: LiveJob, outcome: str, error: str | None) -> JobRecord:
        record = job.record
        if not record.attempts or record.attempts[-1].ended_at is not None:
            return record
        last = record.attempts[-1]
        ended = last.model_copy(
            update={
                "ended_at": utc_now(),
                "outcome": outcome,
                "error": error,
                "hashes": record.progress.hashes - last.hashes,
            }
        )
        return record.model_copy(update={"attempts": [*record.attempts[:-1], ended]})

    # -- age-based jobs ----------------------------------------------------------------------

    async def _wait_until_startable(self, job: LiveJob) -> bool:
        """Wait (status waiting) until hashing should start; False if told to stop first."""
        joined = False
        while True:
            fault = self._source_fault(job)
            if fault is not None:
                raise RetryableError(fault)
            self._update_difficulty(job)
            if self.planner is not None and not joined:
                self.planner.join(
                    job.job_id,
                    lambda: job.record,
                    job.spec,
                    lambda: self._source(job),
                    shared=self.clock.url is not None,
                    hashing=lambda: job.hashing,
                )
                joined = True
            if self._should_start(job):
                return True
            waiting = job.record.model_copy(
                update={
                    "status": JobStatus.WAITING,
                    "waiting_info": self._waiting_info(job),
                    "updated_at": utc_now(),
                }
            )
            if job.record.status is not JobStatus.WAITING:
                if not await self.store.claim(waiting):
                    return False
            else:
                self.writer.put(waiting)
            job.record = waiting
            job.notify()
            with anyio.move_on_after(self._seconds_to_next_block(job)):
                async with anyio.create_task_group() as tg:

                    async def stop_wait() -> None:
                        await job.stop_requested.wait()
                        tg.cancel_scope.cancel()

                    tg.start_soon(stop_wait)
                    await self.clock.wait_changed()
                    tg.cancel_scope.cancel()
            if job.stop is not None:
                return False

    def _source_fault(self, job: LiveJob) -> str | None:
        """Why the job cannot go on: its only height source has been silent past the grace."""
        if job.spec.current_block_height is not None or self.clock.url is None:
            return None  # the job's own height is extrapolated as long as it takes
        silent, grace = self.clock.silent_for(), self.config.block_height_grace_seconds
        if silent <= grace:
            return None
        return (
            f"the block height source {self.clock.url} has not answered for {silent:.0f} s "
            f"(BLOCK_HEIGHT_GRACE_SECONDS={grace:g}): {self.clock.last_error}"
        )

    def _source(self, job: LiveJob) -> Anchor:
        """The polled chain height when there is one, else the height the job was given."""
        source = self.clock.anchor or job.anchor
        if source is None:
            raise RetryableError(
                "no block height: BLOCK_HEIGHT_URL gave none and the job has no "
                "current_block_height"
            )
        return source

    def _update_difficulty(self, job: LiveJob) -> int:
        """Read the height once; the job's age difficulty follows from it."""
        spec = job.spec
        assert spec.block_start is not None and spec.difficulty_range is not None
        job.height = self._source(job).now()
        job.difficulty = age_difficulty(job.height - spec.block_start, spec.difficulty_range)
        return job.difficulty

    def _should_start(self, job: LiveJob) -> bool:
        threshold = self.config.target_start.threshold
        if self.planner is None:
            assert threshold is not None
            return job.difficulty <= threshold
        return self.planner.plan(job.job_id).should_hash(job.height)

    def _waiting_info(self, job: LiveJob) -> WaitingInfo:
        threshold = self.config.target_start.threshold
        if self.planner is None or job.job_id not in self.planner:
            start = threshold if threshold is not None else job.difficulty
            return waiting_info(job.spec, job.height, job.difficulty, start)
        plan = self.planner.plan(job.job_id)
        return plan_info(plan, job.spec, job.height, job.difficulty, self._clock_note())

    def _clock_note(self) -> str | None:
        """Said in waiting_info while the height source is silent (heights extrapolated)."""
        silent = self.clock.silent_for()
        if self.clock.url is None or silent <= 2 * self.config.block_time_seconds:
            return None
        return (
            f"the block height source has not answered for {silent:.0f} s; the plan goes on "
            f"from heights extrapolated at {self.config.block_time_seconds:g} s a block"
        )

    def _seconds_to_next_block(self, job: LiveJob) -> float:
        source = self._source(job)
        return source.seconds_until(source.now() + 1)

    async def _next_block(self, job: LiveJob) -> None:
        """Sleep until the extrapolated height moves on, or a poll brings a new one."""
        with anyio.move_on_after(self._seconds_to_next_block(job)):
            await self.clock.wait_changed()


def waiting_info(spec: JobSpec, height: int, difficulty: int, start: int) -> WaitingInfo:
    """Where an age-based job stands: its age and difficulty now, and when it will hash."""
    assert spec.block_start is not None and spec.difficulty_range is not None
    start_age = first_valid_age(start, spec.difficulty_range) or 0
    return WaitingInfo(
        current_age=height - spec.block_start,
        current_difficulty=difficulty,
        start_difficulty=start,
        blocks_remaining=max(0, spec.block_start + start_age - height),
    )


def layout_of(record: JobRecord) -> int:
    """The job's search order: the one it was created with (a job with no checkpoint has
    searched nothing yet, and takes the latest)."""
    return record.checkpoint.layout if record.checkpoint is not None else LAYOUT_LATEST


def _pool_checkpoint(record: JobRecord) -> Checkpoint:
    stored = record.checkpoint
    if stored is None:
        return Checkpoint()
    return Checkpoint(stored.position, tuple((s, c) for s, c in stored.in_flight))


def _best(record: JobRecord) -> Best | None:
    p = record.progress
    if p.best_nonce is None or p.best_hash is None or p.best_zeros <= 0:
        return None
    return Best(p.best_zeros, int(p.best_nonce), p.best_hash)


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)
