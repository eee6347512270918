"""How an attempt ends, in the store: a proof recorded (retried until it is durable), a
failure (re-queued when `max_retries` allows), a pause with its checkpoint, an interruption
left to JOBS_RECOVERY. Every end is one store transition; CANCEL and LOST write nothing."""

from __future__ import annotations

import logging
import time
from datetime import timedelta

import anyio

from pow_mcp.pow.difficulty import valid_from_block
from pow_mcp.pow.scheduler import Outcome, OutcomeKind
from pow_mcp.server.config import Config
from pow_mcp.server.jobs.live import LiveJob, RetryableError, StopReason
from pow_mcp.store import JobRecord, JobStatus, JobStore, StoreError, StoreWriteError, utc_now
from pow_mcp.store.record import ACTIVE, INTERRUPTED_ERROR, JobResult, ProofOfWork
from pow_mcp.store.writer import ProgressWriter

log = logging.getLogger(__name__)

FINISH_RETRY_SECONDS = (0.5, 1.0, 2.0, 5.0)  # backoff while a proof cannot be saved
SHUTDOWN_FINISH_SECONDS = 10.0  # how long a stopping server keeps trying to save a result


class Endings:
    """Records how this instance's attempts end; `closing` while the server stops."""

    def __init__(self, config: Config, store: JobStore, writer: ProgressWriter) -> None:
        self.config, self.store, self.writer = config, store, writer
        self.closing = False

    async def conclude(self, job: LiveJob, outcome: Outcome, timed_out: bool) -> None:
        job.ending = True
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
                self.store.outage.warning(
                    log,
                    "job %s: saving its end (%s) failed, retrying in %g s: %s",
                    job.job_id,
                    status.value,
                    delay,
                    exc,
                    about=job.job_id,
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

    async def attempt_failed(self, job: LiveJob, error: str) -> None:
        """A failure outside the job's own limits: retry after the delay, or fail."""
        job.ending = True
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
