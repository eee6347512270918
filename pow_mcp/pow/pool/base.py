"""The hashing-pool interface the job manager talks to, and a job's handle on it.

A pool runs `SearchTask`s for jobs and reports each job's progress and outcome on the
event loop. Implementations: `pow.pool.local.LocalPool` (worker processes on this
machine) and `pow.pool.inline.InlinePool` (in the event loop, hashlib: for unit tests).
"""

from __future__ import annotations

import queue
from abc import ABC, abstractmethod
from collections.abc import Callable

import anyio

from pow_mcp.pow.scheduler import Outcome, Progress, SearchTask

ProgressCallback = Callable[[Progress], None]
# What a pool's own thread hands to the event loop: (job id, event), or None to stop.
EventQueue = queue.SimpleQueue[tuple[str, Progress | Outcome] | None]


class JobHandle:
    """A job submitted to a pool: its latest progress and, once it ends, its outcome."""

    def __init__(self, job_id: str, on_progress: ProgressCallback | None) -> None:
        self.job_id = job_id
        self.progress: Progress | None = None
        self.outcome: Outcome | None = None
        self._on_progress = on_progress
        self._done = anyio.Event()

    async def wait(self) -> Outcome:
        await self._done.wait()
        assert self.outcome is not None
        return self.outcome

    def deliver(self, event: Progress | Outcome) -> None:
        """Called by the pool, on the event loop."""
        if isinstance(event, Outcome):
            self.outcome, self.progress = event, event.progress
            self._done.set()
        else:
            self.progress = event
            if self._on_progress is not None:
                self._on_progress(event)


class HashingPool(ABC):
    """Where searches run. Every method is called from the event loop."""

    size: int  # workers
    kernel_name: str

    @property
    @abstractmethod
    def hashrate(self) -> float:
        """Measured hashes per second of the whole pool."""

    @abstractmethod
    def submit(
        self, job_id: str, task: SearchTask, on_progress: ProgressCallback | None = None
    ) -> JobHandle:
        """Start a search; its progress reaches `on_progress`, its end the handle."""

    @abstractmethod
    def cancel(self, job_id: str) -> None:
        """Drop the search at once (outcome CANCELLED; chunks still out do not count)."""

    @abstractmethod
    def stop(self, job_id: str) -> None:
        """Stop handing out chunks; the outcome is STOPPED (or FOUND) once those out are
        back, with a checkpoint from which a new task goes on without a gap or overlap."""

    @abstractmethod
    def set_difficulty(self, job_id: str, difficulty: int) -> None:
        """Change the target; a best hash already good enough ends the search as FOUND."""

    def set_rank(self, job_id: str, rank: int) -> None:  # noqa: B027  # a hint: may be ignored
        """Among searches of one priority, serve lower ranks first (0, the default, first);
        equal ranks share the workers. A pool that cannot order its work may ignore it."""

    @abstractmethod
    async def aclose(self) -> None:
        """Stop every worker; searches still running end as FAILED."""

    async def run(
        self, job_id: str, task: SearchTask, on_progress: ProgressCallback | None = None
    ) -> Outcome:
        """Submit and wait; cancelling the caller cancels the search."""
        handle = self.submit(job_id, task, on_progress)
        try:
            return await handle.wait()
        finally:
            if handle.outcome is None:
                self.cancel(job_id)


async def deliver_events(events: EventQueue, handles: dict[str, JobHandle]) -> None:
    """Hand the events a pool's thread queues to their jobs' handles, on the event loop,
    until None; a handle is forgotten once its outcome is delivered."""
    while True:
        item = await anyio.to_thread.run_sync(events.get, abandon_on_cancel=True)
        batch = [item]
        while True:
            try:
                batch.append(events.get_nowait())
            except queue.Empty:
                break
        for entry in batch:
            if entry is None:
                return
            job_id, event = entry
            handle = handles.get(job_id)
            if handle is None:
                continue
            if isinstance(event, Outcome):
                del handles[job_id]
            handle.deliver(event)
