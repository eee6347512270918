"""Interrupted jobs: the JOBS_RECOVERY policy applied to jobs whose instance is gone (at
start-up, and whenever a peer's lease expires), and what a stopping instance leaves behind."""

from __future__ import annotations

import logging
from collections.abc import Callable

import anyio

from pow_mcp.server.config import Config
from pow_mcp.store import (
    ACTIVE,
    INTERRUPTED_ERROR,
    JobRecord,
    JobStatus,
    JobStore,
    StoreError,
    utc_now,
)
from pow_mcp.store.record import ANY_INSTANCE, Recovery

log = logging.getLogger(__name__)

RECOVERY_SECONDS = 1.0  # orphans are looked for at least this often


class Recoveries:
    """Takes over the jobs of instances that are gone, and hands over this one's at a stop."""

    def __init__(self, config: Config, store: JobStore, taken: Callable[[], None]) -> None:
        self.config = config
        self.store = store
        self.taken = taken  # jobs were taken over: the dispatcher and the waits look again
        self.closing = False

    async def run(self) -> None:
        """Look for orphans whenever the store changes, and at least every second."""
        while not self.closing:
            try:
                await self.recover_orphans()
            except StoreError as exc:
                self.store.outage.warning(
                    log, "looking for interrupted jobs failed, will retry: %s", exc
                )
            with anyio.move_on_after(RECOVERY_SECONDS):
                await self.store.wait_for_change()

    async def recover_orphans(self) -> int:
        """Apply JOBS_RECOVERY to jobs whose instance is gone; returns how many were taken."""
        taken = 0
        for record in await self.store.orphans():
            if self.closing:
                break
            recovered = self._recovered(record)
            if await self.store.adopt(recovered, from_owner=record.owner):
                _log_recovery(record, recovered)  # once taken: a peer may have been quicker
                taken += 1
        if taken:
            self.taken()
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

    async def leave_owned(self) -> None:
        """At a stop, after this instance's jobs stopped: each one it still owns is left as
        JOBS_RECOVERY says (queued for the next start, or failed as interrupted)."""
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
