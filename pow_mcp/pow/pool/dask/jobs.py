"""The Dask pool's jobs: the commands they get, the events they send back, and their wait
(with a note, then a timeout) while the cluster cannot hash.

`JobsLayer` is the layer of `DaskPool` (see pow.pool.dask) over `ClusterLayer`. Its
bookkeeping is the same `pow.scheduler.Scheduler` as the local pool's, so checkpoints, stops
and outcomes behave exactly alike.
"""

from __future__ import annotations

import logging
import time
from abc import abstractmethod
from collections.abc import Callable
from dataclasses import replace

from pow_mcp.pow.pool.base import EventQueue
from pow_mcp.pow.pool.dask.cluster import ClusterLayer
from pow_mcp.pow.scheduler import Event, Outcome, OutcomeKind, Progress, Scheduler, SearchTask

# The pool's one logger, whichever of its modules logs: named after the package.
log = logging.getLogger(__package__)


class JobsLayer(ClusterLayer):
    """`DaskPool`'s jobs, on the pool's loop: commands, events, waiting for the cluster."""

    _events: EventQueue  # each job's progress and outcome, to the event loop
    _scheduler: Scheduler
    _jobs: set[str]
    _waiting_since: dict[str, float]  # job id -> when it began to wait
    _waiting: str | None  # why nothing hashes now

    @abstractmethod
    def _drop_chunks(self, job_id: str) -> None:
        """Take the job's chunks still out off the books and cancel them on the cluster."""

    # -- commands (pool's loop) ---------------------------------------------------------------

    def _add(self, job_id: str, task: SearchTask) -> None:
        try:
            events = self._scheduler.add(job_id, task)
        except Exception as exc:
            log.exception("job %s could not be added to the Dask pool", job_id)
            progress = Progress(task.hashes, 0.0, 0, None, None, task.checkpoint)
            self._events.put((job_id, Outcome(OutcomeKind.FAILED, progress, error=str(exc))))
            return
        self._jobs.add(job_id)
        self._emit(events)
        if job_id in self._jobs and self._waiting is not None:
            self._waiting_since[job_id] = time.monotonic()
            self._note(job_id, self._waiting)
        self._wake_up()

    def _command(self, job_id: str, command: Callable[[], list[Event]]) -> None:
        try:
            self._emit(command())
        except Exception:
            log.exception("job %s: a command to the Dask pool failed", job_id)
            self._emit(self._failed(job_id, "internal error in the Dask pool"))
        self._wake_up()

    def _emit(self, events: list[Event]) -> None:
        for job_id, event in events:
            if isinstance(event, Outcome):
                self._forget_job(job_id)
            self._events.put((job_id, event))

    def _failed(self, job_id: str, error: str) -> list[Event]:
        """End a job as FAILED with `error`. Its chunks still out are dropped (nothing hashes
        while the pool waits for its cluster) and stay pending in its checkpoint."""
        return [
            (jid, replace(e, kind=OutcomeKind.FAILED, error=error))
            if isinstance(e, Outcome)
            else (jid, e)
            for jid, e in self._scheduler.cancel(job_id)
        ]

    def _forget_job(self, job_id: str) -> None:
        """The job ended: its chunks still out are of no use; drop them on the cluster."""
        self._jobs.discard(job_id)
        self._waiting_since.pop(job_id, None)
        self._drop_chunks(job_id)

    # -- waiting for the cluster (pool's loop) ------------------------------------------------

    def _set_waiting(self, reason: str | None) -> None:
        if reason == self._waiting:
            return
        was, self._waiting = self._waiting, reason
        if reason is not None and was is None:
            log.warning(
                "%s; jobs wait (POW_CLUSTER_TIMEOUT_SECONDS=%g)", reason, self.cluster_timeout
            )
        elif reason is None and was is not None and self._jobs:
            log.info("the Dask cluster at %s is back; jobs go on", self.cluster)
        now = time.monotonic()
        for job_id in list(self._jobs):
            if reason is None:
                self._waiting_since.pop(job_id, None)
            else:
                self._waiting_since.setdefault(job_id, now)
            self._note(job_id, reason)

    def _note(self, job_id: str, reason: str | None) -> None:
        progress = self._scheduler.progress(job_id)
        if progress is None:
            return
        if reason is not None:
            reason = (
                f"{reason}; hashing goes on when it is back, or this attempt fails after "
                f"{self.cluster_timeout:g} s (POW_CLUSTER_TIMEOUT_SECONDS)"
            )
            progress = replace(progress, hashrate=0.0)
        self._events.put((job_id, replace(progress, note=reason)))

    def _check_timeouts(self) -> None:
        now = time.monotonic()
        for job_id, since in list(self._waiting_since.items()):
            if now - since < self.cluster_timeout:
                continue
            waited = now - since
            error = (
                f"the Dask cluster at {self.cluster} was unusable for {waited:.0f} s "
                f"(POW_CLUSTER_TIMEOUT_SECONDS={self.cluster_timeout:g}): {self._waiting}"
            )
            log.warning("job %s: %s", job_id, error)
            self._emit(self._failed(job_id, error))
