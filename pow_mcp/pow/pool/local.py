"""A pool of hashing worker processes on this machine, shared by many jobs.

`WorkerPool` is thread-safe and callable from plain code: one scheduler thread owns the
worker pipes, hands out chunks of about `chunk_seconds` of work and reports each job's
progress and outcome to a single event sink. `LocalPool` wraps it as a `HashingPool` for
anyio code, so awaiting a job never blocks the event loop.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import queue
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager, suppress
from dataclasses import dataclass
from multiprocessing.connection import wait
from multiprocessing.process import BaseProcess
from typing import Any

import anyio

from pow_mcp.pow.kernels import ChunkResult, get_kernel
from pow_mcp.pow.pool.base import (
    EventQueue,
    HashingPool,
    JobHandle,
    ProgressCallback,
    deliver_events,
)
from pow_mcp.pow.scheduler import (
    Chunk,
    Event,
    Outcome,
    Progress,
    Scheduler,
    SearchTask,
)
from pow_mcp.pow.worker import worker_main

if sys.platform == "win32":
    from multiprocessing.connection import PipeConnection as Connection
else:
    from multiprocessing.connection import Connection

log = logging.getLogger(__name__)

CHUNK_SECONDS = 0.1
FIRST_CHUNK = 4096  # before a worker has measured its rate
START_TIMEOUT_SECONDS = 60.0
STOP_TIMEOUT_SECONDS = 2.0
EventSink = Callable[[str, Progress | Outcome], None]


def default_workers() -> int:
    return os.cpu_count() or 1


@dataclass(eq=False)  # identity: a worker is one process, not a value
class _Worker:
    process: BaseProcess
    conn: Connection
    rate: float = 0.0  # hashes per second, measured
    ready: bool = False
    chunk: Chunk | None = None


class WorkerPool:
    """Worker processes plus the thread that schedules chunks onto them."""

    def __init__(
        self,
        sink: EventSink,
        workers: int | None = None,
        kernel: str | None = None,
        chunk_seconds: float = CHUNK_SECONDS,
    ) -> None:
        self.size = workers if workers is not None else default_workers()
        if self.size < 1:
            raise ValueError("a pool needs at least 1 worker")
        self.kernel_name = get_kernel(kernel).name  # fails here, not in a worker
        self.chunk_seconds = chunk_seconds
        self._sink = sink
        # spawn: a fork of a threaded, async parent can deadlock in the child.
        self._ctx = multiprocessing.get_context("spawn")
        self._workers: list[_Worker] = []
        self._scheduler = Scheduler()
        self._commands: queue.SimpleQueue[Callable[[], None]] = queue.SimpleQueue()
        # Wakes the scheduler thread. A Connection, not os.pipe: on Windows `wait` takes
        # Connections, sockets and process handles only.
        self._wake_r, self._wake_w = self._ctx.Pipe(duplex=False)
        self._wake_lock = threading.Lock()
        self._wake_pending = False
        self._thread: threading.Thread | None = None
        self._stopping = False
        self._closed = False
        self._replaced = 0

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        """Start the workers, wait until each has measured its speed, start scheduling."""
        self._workers = [self._spawn() for _ in range(self.size)]
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        try:
            for worker in self._workers:
                if not worker.conn.poll(max(0.0, deadline - time.monotonic())):
                    raise TimeoutError(f"no answer within {START_TIMEOUT_SECONDS:.0f} s")
                self._on_message(worker, worker.conn.recv())
        except (EOFError, OSError) as exc:
            self.close()
            raise RuntimeError(f"hashing worker processes failed to start: {exc!r}") from exc
        self._thread = threading.Thread(target=self._run, name="pow-scheduler", daemon=True)
        self._thread.start()
        log.info(
            "worker pool started: %d workers, kernel %s, %.2f M hashes/s",
            self.size,
            self.kernel_name,
            self.hashrate / 1e6,
        )

    def close(self) -> None:
        """Stop scheduling, stop and join every worker. Idempotent."""
        if self._closed:
            return
        if self._thread is not None:
            self._post(self._request_stop)
            self._thread.join()
        self._closed = True
        for job_id, outcome in self._scheduler.cancel_all("the worker pool was shut down"):
            self._sink(job_id, outcome)
        for worker in self._workers:
            with suppress(OSError):
                worker.conn.send(None)
        deadline = time.monotonic() + STOP_TIMEOUT_SECONDS
        for worker in self._workers:
            worker.process.join(max(0.0, deadline - time.monotonic()))
            if worker.process.is_alive():
                worker.process.kill()
                worker.process.join()
            worker.conn.close()
        self._wake_r.close()
        self._wake_w.close()
        log.info("worker pool stopped")

    def __enter__(self) -> WorkerPool:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- what callers see -------------------------------------------------------------------

    @property
    def hashrate(self) -> float:
        """Measured hashes per second of the whole pool."""
        return sum(w.rate for w in self._workers)

    def worker_pids(self) -> list[int]:
        return [w.process.pid for w in self._workers if w.process.pid is not None]

    @property
    def workers_replaced(self) -> int:
        return self._replaced

    def submit(self, job_id: str, task: SearchTask) -> None:
        """Queue a search; progress and the outcome reach the sink under `job_id`."""
        self._call(lambda: self._emit(self._scheduler.add(job_id, task)))

    def cancel(self, job_id: str) -> None:
        self._call(lambda: self._emit(self._scheduler.cancel(job_id)))

    def stop(self, job_id: str) -> None:
        self._call(lambda: self._emit(self._scheduler.stop(job_id)))

    def set_difficulty(self, job_id: str, difficulty: int) -> None:
        self._call(lambda: self._emit(self._scheduler.set_difficulty(job_id, difficulty)))

    def set_rank(self, job_id: str, rank: int) -> None:
        self._call(lambda: self._scheduler.set_rank(job_id, rank))

    # -- the scheduler thread ----------------------------------------------------------------

    def _call(self, command: Callable[[], None]) -> None:
        if self._stopping or self._closed:
            raise RuntimeError("the worker pool is shut down")
        self._post(command)

    def _post(self, command: Callable[[], None]) -> None:
        self._commands.put(command)
        with self._wake_lock:  # one wake-up message at a time, and one pending at most
            if not self._wake_pending:
                self._wake_pending = True
                self._wake_w.send_bytes(b"x")

    def _request_stop(self) -> None:
        self._stopping = True

    def _emit(self, events: list[Event]) -> None:
        for job_id, event in events:
            self._sink(job_id, event)

    def _run(self) -> None:
        try:
            while not self._stopping:
                self._dispatch()
                self._wait_and_handle()
        except Exception:
            log.exception("worker pool scheduler crashed")
            self._stopping = True
            # Nobody may wait forever on a job this thread will never finish.
            self._emit(self._scheduler.cancel_all("internal error in the worker pool"))

    def _wait_and_handle(self) -> None:
        # Connections and process sentinels, which `wait` takes on every OS.
        sources: list[Connection | int] = [self._wake_r]
        by_source: dict[object, tuple[_Worker, bool]] = {}
        for worker in self._workers:
            sources += [worker.conn, worker.process.sentinel]
            by_source[worker.conn] = (worker, False)
            by_source[worker.process.sentinel] = (worker, True)
        ready = wait(sources)
        dead: list[_Worker] = []
        for source in ready:
            if source is self._wake_r:
                self._drain_commands()
                continue
            worker, is_sentinel = by_source[source]
            if is_sentinel:
                dead.append(worker)
                continue
            try:
                self._on_message(worker, worker.conn.recv())
            except (EOFError, OSError):
                dead.append(worker)
        for worker in dict.fromkeys(dead):  # conn EOF and sentinel may both fire
            self._replace(worker)

    def _drain_commands(self) -> None:
        with self._wake_lock:
            while self._wake_r.poll():
                self._wake_r.recv_bytes()
            self._wake_pending = False  # a command posted from here on sends a new one
        while True:
            try:
                command = self._commands.get_nowait()
            except queue.Empty:
                return
            command()

    def _dispatch(self) -> None:
        now = time.monotonic()
        for worker in self._workers:
            if not worker.ready or worker.chunk is not None:
                continue
            size = max(FIRST_CHUNK, int(worker.rate * self.chunk_seconds))
            chunk = self._scheduler.next_chunk(size, now)
            if chunk is None:
                return
            worker.chunk = chunk
            # If the worker is dead its sentinel says so, and the chunk is handed out again.
            with suppress(OSError):
                worker.conn.send(
                    (
                        chunk.job_id,
                        chunk.prefix,
                        chunk.start,
                        chunk.count,
                        chunk.difficulty,
                        chunk.layout,
                    )
                )

    def _on_message(self, worker: _Worker, message: Any) -> None:
        if message[0] == "ready":
            worker.ready, worker.rate = True, float(message[2])
            return
        job_id, start, found, hashes, best_nonce, best_zeros, best_hash, seconds = message
        chunk, worker.chunk = worker.chunk, None
        if chunk is None or (chunk.job_id, chunk.start) != (job_id, start):
            log.warning("worker %s answered a chunk it was not given", worker.process.pid)
            return
        if seconds > 0 and hashes >= FIRST_CHUNK:
            # Moving average: steady under noise, quick to follow a change of kernel or load.
            rate = hashes / seconds
            worker.rate = rate if worker.rate == 0 else 0.7 * worker.rate + 0.3 * rate
        result = ChunkResult(found, hashes, best_nonce, best_zeros, best_hash)
        self._emit(self._scheduler.chunk_done(chunk, result, time.monotonic()))

    def _spawn(self) -> _Worker:
        parent_conn, child_conn = self._ctx.Pipe()
        process = self._ctx.Process(
            target=worker_main,
            args=(child_conn, os.getpid(), self.kernel_name),
            name="pow-worker",
            daemon=True,
        )
        with _main_module_hidden():
            process.start()
        child_conn.close()
        return _Worker(process, parent_conn)

    def _replace(self, worker: _Worker) -> None:
        index = self._workers.index(worker)
        worker.process.join(0.5)
        log.warning(
            "hashing worker %s died (exit code %s); starting a replacement",
            worker.process.pid,
            worker.process.exitcode,
        )
        if worker.chunk is not None:
            self._emit(self._scheduler.chunk_lost(worker.chunk))
        worker.conn.close()
        replacement = self._spawn()
        replacement.rate = worker.rate
        self._workers[index] = replacement
        self._replaced += 1


@contextmanager
def _main_module_hidden() -> Iterator[None]:
    """Start a spawned worker without re-running the parent's __main__ in it.

    spawn re-imports the parent's main module in every child; for the server that is the
    whole MCP stack (a second or more per worker, and its memory), while a worker needs only
    pow.worker. Without __spec__ and __file__ on __main__, spawn leaves it alone.
    """
    main = sys.modules["__main__"]
    saved: dict[str, object] = {
        name: main.__dict__[name] for name in ("__spec__", "__file__") if name in main.__dict__
    }
    main.__dict__["__spec__"] = None
    main.__dict__.pop("__file__", None)
    try:
        yield
    finally:
        main.__dict__.update(saved)
        if "__spec__" not in saved:
            main.__dict__.pop("__spec__", None)


class LocalPool(HashingPool):
    """anyio face of `WorkerPool`: events are delivered on the event loop, never blocking it."""

    def __init__(self, workers: int | None = None, kernel: str | None = None) -> None:
        self._events: EventQueue = queue.SimpleQueue()
        self.pool = WorkerPool(lambda job_id, e: self._events.put((job_id, e)), workers, kernel)
        self.size = self.pool.size
        self.kernel_name = self.pool.kernel_name
        self._handles: dict[str, JobHandle] = {}

    @classmethod
    @asynccontextmanager
    async def open(
        cls, workers: int | None = None, kernel: str | None = None
    ) -> AsyncIterator[LocalPool]:
        self = cls(workers, kernel)
        await anyio.to_thread.run_sync(self.pool.start)
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._pump)
                try:
                    yield self
                finally:
                    with anyio.CancelScope(shield=True):
                        await anyio.to_thread.run_sync(self._close)
        finally:
            self.pool.close()
            self._events.put(None)  # whatever happened, the pump's thread must not block exit

    @property
    def hashrate(self) -> float:
        return self.pool.hashrate

    def submit(
        self, job_id: str, task: SearchTask, on_progress: ProgressCallback | None = None
    ) -> JobHandle:
        handle = JobHandle(job_id, on_progress)
        self._handles[job_id] = handle
        self.pool.submit(job_id, task)
        return handle

    def cancel(self, job_id: str) -> None:
        self.pool.cancel(job_id)

    def stop(self, job_id: str) -> None:
        self.pool.stop(job_id)

    def set_difficulty(self, job_id: str, difficulty: int) -> None:
        self.pool.set_difficulty(job_id, difficulty)

    def set_rank(self, job_id: str, rank: int) -> None:
        self.pool.set_rank(job_id, rank)

    async def aclose(self) -> None:
        """Stop the workers now (also done on leaving `open`)."""
        await anyio.to_thread.run_sync(self._close)

    def _close(self) -> None:
        try:
            self.pool.close()
        finally:
            self._events.put(None)

    async def _pump(self) -> None:
        await deliver_events(self._events, self._handles)
