"""A hashing pool inside the event loop: the hashlib kernel, small chunks, no processes.

The same scheduler as the process pool, so checkpoints, stops and outcomes behave the
same; only slower. For the job manager's unit tests and for machines where processes are
not wanted. `rate` pretends a measured speed, so estimates are deterministic.
"""

from __future__ import annotations

import anyio
import anyio.lowlevel

from pow_mcp.pow.kernels import HashlibKernel
from pow_mcp.pow.pool.base import HashingPool, JobHandle, ProgressCallback
from pow_mcp.pow.scheduler import Event, Outcome, Scheduler, SearchTask

CHUNK = 2048


class InlinePool(HashingPool):
    """Hashes one chunk at a time between other tasks; run `run_forever` in a task group."""

    kernel_name = "hashlib"

    def __init__(self, rate: float = 1e6, chunk: int = CHUNK) -> None:
        self.size = 1
        self._rate = rate
        self._chunk = chunk
        self._scheduler = Scheduler()
        self._handles: dict[str, JobHandle] = {}
        self._kernel = HashlibKernel()
        self._work = anyio.Event()
        self._closed = False

    @property
    def hashrate(self) -> float:
        return self._rate

    def submit(
        self, job_id: str, task: SearchTask, on_progress: ProgressCallback | None = None
    ) -> JobHandle:
        if self._closed:
            raise RuntimeError("the pool is closed")
        handle = self._handles[job_id] = JobHandle(job_id, on_progress)
        self._deliver(self._scheduler.add(job_id, task))
        self._work.set()
        return handle

    def cancel(self, job_id: str) -> None:
        self._deliver(self._scheduler.cancel(job_id))

    def stop(self, job_id: str) -> None:
        self._deliver(self._scheduler.stop(job_id))

    def set_difficulty(self, job_id: str, difficulty: int) -> None:
        self._deliver(self._scheduler.set_difficulty(job_id, difficulty))

    def set_rank(self, job_id: str, rank: int) -> None:
        self._scheduler.set_rank(job_id, rank)

    async def aclose(self) -> None:
        self._closed = True
        self._deliver(self._scheduler.cancel_all("the worker pool was shut down"))

    async def run_forever(self) -> None:
        while not self._closed:
            chunk = self._scheduler.next_chunk(self._chunk, anyio.current_time())
            if chunk is None:
                await self._work.wait()
                self._work = anyio.Event()
                continue
            result = self._kernel.search(
                chunk.prefix, chunk.start, chunk.count, chunk.difficulty, chunk.layout
            )
            await (
                anyio.lowlevel.checkpoint()
            )  # the chunk was "out" meanwhile: stops and cancels may land
            self._deliver(self._scheduler.chunk_done(chunk, result, anyio.current_time()))

    def _deliver(self, events: list[Event]) -> None:
        for job_id, event in events:
            handle = self._handles.get(job_id)
            if handle is None:
                continue
            if isinstance(event, Outcome):
                del self._handles[job_id]
            handle.deliver(event)
