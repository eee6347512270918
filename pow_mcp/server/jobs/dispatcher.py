"""Which of this instance's jobs run now: taken from the store in order, never more than fit.

Every job this instance runs flows through here, whatever brought it to the queue: a
start, a resume, a retry whose delay has passed, a dependency that completed, a recovery.
The store's `runnable` order is priority, then age; at most `capacity` jobs hash at once
(a job of higher priority than every running one is let in anyway: the pool serves
priority first, so it takes the workers at once). Age-based jobs that are still waiting
for their block do not count.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable

import anyio
from anyio.abc import TaskGroup

from pow_mcp.server.jobs.live import LiveJob, StopReason, anchor_for
from pow_mcp.server.jobs.runner import Runner
from pow_mcp.server.jobs.spec import JobInputError, JobSpec
from pow_mcp.store import TERMINAL, JobRecord, JobStatus, JobStore, StoreError, utc_now

log = logging.getLogger(__name__)

TICK_SECONDS = 1.0  # retry delays and peers' changes are looked at this often at least
RUNNABLE_MARGIN = 8  # extra candidates per pass, for the priority check


class Dispatcher:
    """Runs this instance's runnable jobs; `wake` after anything that may make one."""

    def __init__(
        self,
        store: JobStore,
        runner: Runner,
        task_group: TaskGroup,
        *,
        capacity: int,
        block_time: float,
        changed: Callable[[], None] = lambda: None,
    ) -> None:
        self.store, self.runner = store, runner
        self._changed = changed  # a job started or ended here: waiters look again
        self.capacity = capacity
        self.live: dict[str, LiveJob] = {}
        self._tg = task_group
        self._block_time = block_time
        self._wake = anyio.Event()
        self._check_blocked = True  # blocked jobs may exist (a start-up, a new dependency)
        self._stopping = False

    def wake(self, *, blocked: bool = False) -> None:
        self._check_blocked |= blocked
        self._wake.set()

    async def run(self) -> None:
        """Dispatch forever; run it in the manager's task group."""
        while not self._stopping:
            self._wake = anyio.Event()
            try:
                await self._pass()
            except StoreError as exc:
                self.store.outage.warning(log, "dispatching jobs failed, will retry: %s", exc)
            with anyio.move_on_after(TICK_SECONDS):
                await self._wake.wait()

    async def watch_peers(self) -> None:
        """Stop the jobs that others cancelled, paused or took over; run it in a task group.

        The store's signal is an edge: one that fires while a look is under way would be
        lost if the look awaited the next one, so a pump keeps it until the next look; and
        the live jobs are looked at every TICK_SECONDS whatever the store says.
        """
        changed = anyio.Event()

        async def pump() -> None:
            while True:
                await self.store.wait_for_change()
                changed.set()

        async with anyio.create_task_group() as tg:
            tg.start_soon(pump)
            while not self._stopping:
                with anyio.move_on_after(TICK_SECONDS):
                    await changed.wait()
                changed = anyio.Event()
                self._check_blocked = True
                await self.check_live(list(self.live))
                self._wake.set()
            tg.cancel_scope.cancel()

    async def check_live(self, job_ids: Iterable[str]) -> None:
        """Compare running jobs with the store; stop those that are not ours to run any more."""
        ids = [job_id for job_id in job_ids if job_id in self.live]
        if not ids:
            return
        try:
            stored = await self.store.get_many(ids)
        except StoreError as exc:
            self.store.outage.warning(
                log, "could not check running jobs against the store: %s", exc
            )
            return
        for job_id in ids:
            job, record = self.live.get(job_id), stored.get(job_id)
            if job is None or job.ending:
                continue  # gone, or its own end (a retry: queued) is what the store shows
            if record is None or record.owner != self.store.instance_id:
                job.request_stop(StopReason.LOST)
            elif record.status in TERMINAL:
                job.request_stop(StopReason.CANCEL)
            elif record.status is JobStatus.PAUSED:
                job.request_stop(StopReason.PAUSE)
            elif record.status is JobStatus.QUEUED and job.record.status in _CLAIMED:
                await self._claim_again(job)
                continue
            else:
                continue
            log.info("job %s: %s elsewhere; stopping it here", job_id, record and record.status)

    async def _claim_again(self, job: LiveJob) -> None:
        """Paused and resumed elsewhere, and handed back to this instance, between two looks:
        it never stopped here, so the store says again that it runs (it would stay queued)."""
        try:
            if await self.store.claim(job.record):
                log.info("job %s: paused and resumed elsewhere; it goes on here", job.job_id)
        except StoreError as exc:
            self.store.outage.warning(
                log,
                "job %s: could not claim it again, will retry: %s",
                job.job_id,
                exc,
                about=job.job_id,
            )

    def start_now(self, record: JobRecord) -> LiveJob | None:
        """Run a job at once (a new age-based job that waits for its block)."""
        if record.job_id in self.live:
            return self.live[record.job_id]
        try:
            spec = JobSpec.from_job_data(record.job_data)
        except JobInputError as exc:
            self._tg.start_soon(self._unrunnable, record, str(exc))
            return None
        job = LiveJob(record, spec, anchor_for(record, spec, self._block_time))
        self.live[record.job_id] = job
        self._tg.start_soon(self._run_job, job, name=f"job {record.job_id}")
        self._changed()
        return job

    async def stop_all(self, reason: StopReason) -> None:
        self._stopping = True
        jobs = list(self.live.values())
        for job in jobs:
            job.request_stop(reason)
        for job in jobs:
            await job.done.wait()

    # -- a pass ------------------------------------------------------------------------------

    async def _pass(self) -> None:
        if self._check_blocked:
            self._check_blocked = False
            await self._resolve_dependencies()
        hashing = [job for job in self.live.values() if not _waiting(job)]
        free = self.capacity - len(hashing)
        lowest = min((job.spec.rank for job in hashing), default=None)
        candidates = await self.store.runnable(
            self.store.instance_id, utc_now(), max(free, 0) + RUNNABLE_MARGIN
        )
        for record in candidates:
            if record.job_id in self.live:
                continue
            if free <= 0 and (lowest is None or record.priority <= lowest):
                break
            if self.start_now(record) is not None:
                free -= 1

    async def _resolve_dependencies(self) -> None:
        """Unblock jobs whose dependencies completed; fail those with one that did not."""
        owned = await self.store.owned(self.store.instance_id, frozenset({JobStatus.QUEUED}))
        blocked = [r for r in owned if r.blocked_by]
        if not blocked:
            return
        deps = await self.store.get_many(sorted({d for r in blocked for d in r.blocked_by}))
        for record in blocked:
            failed = next(
                (d for d in record.blocked_by if d not in deps or deps[d].status in _BROKEN),
                None,
            )
            if failed is not None:
                dep = deps.get(failed)
                why = f"was {dep.status.value}" if dep else "no longer exists"
                await self._unrunnable(record, f"dependency {failed} {why}")
                continue
            remaining = [d for d in record.blocked_by if deps[d].status is not JobStatus.COMPLETED]
            if remaining != record.blocked_by:
                await self.store.save_progress(
                    [record.model_copy(update={"blocked_by": remaining})]
                )
                self._changed()
                if not remaining:
                    log.info("job %s: its dependencies completed; queued to run", record.job_id)
                    self._wake.set()

    async def _unrunnable(self, record: JobRecord, error: str) -> None:
        failed = record.model_copy(update={"status": JobStatus.FAILED, "error": error})
        try:
            if await self.store.finish(failed):
                log.warning("job %s failed: %s", record.job_id, error)
                self._changed()
        except StoreError as exc:
            log.warning("job %s: could not record its failure (%s): %s", record.job_id, error, exc)

    async def _run_job(self, job: LiveJob) -> None:
        try:
            await self.runner.run(job)
        finally:
            self.live.pop(job.job_id, None)
            self._check_blocked = True  # its end may unblock (or fail) others
            self._wake.set()
            self._changed()


_BROKEN = frozenset({JobStatus.FAILED, JobStatus.CANCELLED})
_CLAIMED = frozenset({JobStatus.WAITING, JobStatus.RUNNING})


def _waiting(job: LiveJob) -> bool:
    return job.spec.age_based and not job.hashing
