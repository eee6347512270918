"""Waiting for jobs: until one changes or ends, here or in another process, or until the
server stops (then every wait answers at once, so no client's wait holds the stop up)."""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable, Sequence

import anyio

from pow_mcp.server.jobs.dispatcher import Dispatcher
from pow_mcp.store import JobRecord, JobStatus, JobStore

PROGRESS_REPORT_SECONDS = 0.5
ProgressReporter = Callable[[JobRecord], Awaitable[None]]
RecordOf = Callable[[str], Awaitable[JobRecord]]


class Waits:
    """Waits on jobs as the caller sees them (`record_of`: the live record, or the store's).

    A wait for an end sleeps on one event, set when a status may have changed: this
    instance changed one (`signal`: a start, an end, a control call), another process
    changed the store (`run` forwards the store's signal), or the server is stopping.
    Progress wakes only who asks for it: a live job reports progress many times a second,
    and a hundred open waits woken by each report cost more than the hashing lost to them.
    """

    def __init__(self, store: JobStore, dispatcher: Dispatcher, record_of: RecordOf) -> None:
        self.store = store
        self.dispatcher = dispatcher
        self.record_of = record_of
        self._changed = anyio.Event()  # some job's status may have changed
        self._stopping = False

    async def run(self) -> None:
        """Forward the store's signal (another process changed jobs); run it in a task group."""
        while True:
            await self.store.wait_for_change()
            self.signal()

    def signal(self) -> None:
        """A job's status may have changed: waits look again."""
        self._changed.set()
        self._changed = anyio.Event()

    @property
    def stopping(self) -> bool:
        return self._stopping

    def begin_stop(self) -> None:
        """The server is stopping: every wait answers now (timed out, with the record as it
        is), so no client's wait holds the stop up for the rest of its timeout."""
        self._stopping = True
        self.signal()  # the waits wake, see `stopping` and answer

    def change(self, job_ids: Sequence[str], *, progress: bool = False) -> list[anyio.Event]:
        """Events of which one is set at the next change of these jobs: a status change or
        an end, and with `progress` also a live job's progress. Take them before looking at
        the jobs and wait after, so that a change while looking is not missed."""
        events = [self._changed]
        if progress:
            for job_id in job_ids:
                live = self.dispatcher.live.get(job_id)
                if live is not None:
                    events.append(live.changed)
        return events

    async def wait(
        self, job_id: str, seconds: float, report: ProgressReporter | None = None
    ) -> tuple[JobRecord, bool]:
        """Wait until the job ends or `seconds` pass; returns (record, timed_out).

        With `report`, the progress is reported when it moved, at most every
        PROGRESS_REPORT_SECONDS (looked at on that beat rather than woken by each report)."""
        reported: tuple[JobStatus, int] | None = None
        beat = PROGRESS_REPORT_SECONDS if report is not None else math.inf
        with anyio.move_on_after(seconds):
            while True:
                change = self.change([job_id])
                record = await self.record_of(job_id)
                if record.is_terminal:
                    return record, False
                if self.stopping:
                    break
                if report is not None and reported != (record.status, record.progress.hashes):
                    reported = (record.status, record.progress.hashes)
                    await report(record)
                with anyio.move_on_after(beat):
                    await first_of(change)
        return await self.record_of(job_id), True

    async def wait_many(
        self,
        job_ids: Sequence[str],
        *,
        any_done: bool,
        seconds: float,
        report: Callable[[int, int], Awaitable[None]] | None = None,
    ) -> tuple[list[JobRecord], bool]:
        """Wait until all (or any) of the jobs ended, or `seconds` pass; (records, timed_out)."""
        reported = -1
        with anyio.move_on_after(seconds):
            while True:
                change = self.change(job_ids)
                records = [await self.record_of(job_id) for job_id in job_ids]
                done = sum(1 for r in records if r.is_terminal)
                if report is not None and done != reported:
                    reported = done
                    await report(done, len(records))
                if done == len(records) or (any_done and done):
                    return records, False
                if self.stopping:
                    break
                await first_of(change)
        return [await self.record_of(job_id) for job_id in job_ids], True


async def first_of(events: Sequence[anyio.Event]) -> None:
    """Return when one of the events is set."""
    if len(events) == 1:
        await events[0].wait()
        return
    async with anyio.create_task_group() as tg:
        for event in events:
            tg.start_soon(_then_cancel, event, tg.cancel_scope)


async def _then_cancel(event: anyio.Event, scope: anyio.CancelScope) -> None:
    await event.wait()
    scope.cancel()
