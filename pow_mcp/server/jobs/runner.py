"""One attempt at one job on this instance: wait for its block (age-based jobs, through
`planner.AgeGate`), hash it on the pool, follow its progress, and hand its end to
`endings.py`.

The runner owns the job while it runs: it alone writes the job's body (progress,
checkpoint, result). Every status move is one store transition (`store.transitions`);
moves made elsewhere (a cancel or pause from another instance, a peer recovering the job)
reach it as a `StopReason`, and it stops hashing within one chunk.
"""

from __future__ import annotations

import logging
import time

import anyio

from pow_mcp.pow.difficulty import eta_seconds, valid_from_block
from pow_mcp.pow.layout import LAYOUT_LATEST
from pow_mcp.pow.pool.base import HashingPool
from pow_mcp.pow.scheduler import Best, Checkpoint, Outcome, Progress, SearchTask
from pow_mcp.server.config import Config
from pow_mcp.server.jobs.blocks import BlockClock
from pow_mcp.server.jobs.endings import Endings
from pow_mcp.server.jobs.live import LiveJob, RetryableError, StopReason
from pow_mcp.server.jobs.planner import AgeGate
from pow_mcp.store import JobRecord, JobStatus, JobStore, StoreError, utc_now
from pow_mcp.store.record import (
    Attempt,
)
from pow_mcp.store.record import Checkpoint as StoredCheckpoint
from pow_mcp.store.record import Progress as JobProgress
from pow_mcp.store.writer import ProgressWriter

log = logging.getLogger(__name__)

INTERNAL_ERROR = "internal error while running the job; the server log has details"


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
        self.age = AgeGate(config, clock, pool)
        self.endings = Endings(config, store, writer)

    async def run(self, job: LiveJob) -> None:
        """Run the job until this attempt ends; never raises (but for cancellation)."""
        try:
            await self._run(job)
        except RetryableError as exc:
            await self.endings.attempt_failed(job, str(exc))
        except StoreError as exc:
            log.warning("job %s: the job store failed during the attempt: %s", job.job_id, exc)
            await self.endings.attempt_failed(job, f"the job store failed: {exc}")
        except Exception:
            log.exception("job %s: failed unexpectedly", job.job_id)
            await self.endings.attempt_failed(job, INTERNAL_ERROR)
        finally:
            self.age.leave(job.job_id)
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
                "waiting_info": self.age.waiting_info(job) if job.spec.age_based else None,
            }
        )
        if not await self.store.claim(running):
            log.info("job %s: not started: it was changed elsewhere", job.job_id)
            return
        job.record = running
        job.notify()
        outcome, timed_out = await self._hash(job)
        await self.endings.conclude(job, outcome, timed_out)

    async def _hash(self, job: LiveJob) -> tuple[Outcome, bool]:
        spec, record = job.spec, job.record
        if spec.age_based:
            self.age.update_difficulty(job)
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
            await self.age.next_block(job)
            fault = self.age.source_fault(job)
            if fault is not None:  # end the attempt cleanly, keeping its checkpoint
                job.fault = fault
                job.stop_requested.set()
                return
            before = job.difficulty
            difficulty = self.age.update_difficulty(job)
            if difficulty != before:
                log.info("job %s: difficulty now %d", job.job_id, difficulty)
                job.record = job.record.model_copy(
                    update={"waiting_info": self.age.waiting_info(job)}
                )
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

    # -- age-based jobs ----------------------------------------------------------------------

    async def _wait_until_startable(self, job: LiveJob) -> bool:
        """Wait (status waiting) until hashing should start; False if told to stop first."""
        while True:
            fault = self.age.source_fault(job)
            if fault is not None:
                raise RetryableError(fault)
            self.age.update_difficulty(job)
            self.age.join(job)
            if self.age.should_start(job):
                return True
            waiting = job.record.model_copy(
                update={
                    "status": JobStatus.WAITING,
                    "waiting_info": self.age.waiting_info(job),
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
            with anyio.move_on_after(self.age.seconds_to_next_block(job)):
                async with anyio.create_task_group() as tg:

                    async def stop_wait() -> None:
                        await job.stop_requested.wait()
                        tg.cancel_scope.cancel()

                    tg.start_soon(stop_wait)
                    await self.clock.wait_changed()
                    tg.cancel_scope.cancel()
            if job.stop is not None:
                return False


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
