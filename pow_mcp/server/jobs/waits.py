"""Waiting for jobs: until one changes or ends, here or in another process, or until the
server stops (then every wait answers at once, so no client's wait holds the stop up)."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sequence

import anyio

from pow_mcp.server.jobs.dispatcher import Dispatcher
from pow_mcp.store import JobRecord, JobStore

PROGRESS_REPORT_SECONDS = 0.5
ProgressReporter = Callable[[JobRecord], Awaitable[None]]
RecordOf = Callable[[str], Awaitable[JobRecord]]


class Waits:
    """Waits on jobs as the caller sees them (`record_of`: the live record, or the store's)."""

    def __init__(self, store: JobStore, dispatcher: Dispatcher, record_of: RecordOf) -> None:
        self.store = store
        self.dispatcher = dispatcher
        self.record_of = record_of
        self._changed = anyio.Event()  # this instance changed some job's status
        self._stopping = anyio.Event()

    def signal(self) -> None:
        """This instance changed a job's status: waits look again."""
        self._changed.set()
        self._changed = anyio.Event()

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    def begin_stop(self) -> None:
        """The server is stopping: every wait answers now (timed out, with the record as it
        is), so no client's wait holds the stop up for the rest of its timeout."""
        self._stopping.set()

    async def wait(
        self, job_id: str, seconds: float, report: ProgressReporter | None = None
    ) -> tuple[JobRecord, bool]:
        """Wait until the job ends or `seconds` pass; returns (record, timed_out)."""
        record = await self.record_of(job_id)
        last_report = 0.0
        with anyio.move_on_after(seconds):
            while not record.is_terminal and not self.stopping:
                now = time.monotonic()
                if report is not None and now - last_report >= PROGRESS_REPORT_SECONDS:
                    last_report = now
                    await report(record)
                await self.next_change([job_id])
                record = await self.record_of(job_id)
            if record.is_terminal:
                return record, False
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
        records = [await self.record_of(job_id) for job_id in job_ids]
        reported = -1
        with anyio.move_on_after(seconds):
            while True:
                done = sum(1 for r in records if r.is_terminal)
                if report is not None and done != reported:
                    reported = done
                    await report(done, len(records))
                if done == len(records) or (any_done and done):
                    return records, False
                if self.stopping:
                    break
                await self.next_change(job_ids)
                records = [await self.record_of(job_id) for job_id in job_ids]
        return [await self.record_of(job_id) for job_id in job_ids], True

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


async def _then_cancel(wait: Callable[[], Awaitable[object]], scope: anyio.CancelScope) -> None:
    await wait()
    scope.cancel()
