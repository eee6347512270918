"""`DaskPool`, what callers see of the Dask pool: opening and closing it, the commands it
posts to its own thread, and that thread's main loop.

The class is the top of the layers in this package (see pow.pool.dask), and `__init__` sets
the state each of them declares.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import itertools
import logging
import queue
import threading
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import anyio

from pow_mcp.pow.pool.base import JobHandle, ProgressCallback, deliver_events
from pow_mcp.pow.pool.dask.chunks import CHUNK_SECONDS, PREFETCH_SECONDS, ChunksLayer
from pow_mcp.pow.pool.dask.cluster import CONNECT_TIMEOUT_SECONDS, LOCAL, TICK_SECONDS
from pow_mcp.pow.scheduler import Scheduler, SearchTask

# The pool's one logger, whichever of its modules logs: named after the package.
log = logging.getLogger(__package__)


class DaskPool(ChunksLayer):
    """`HashingPool` on a Dask cluster: `cluster` is "local" or a scheduler address."""

    def __init__(
        self,
        cluster: str,
        *,
        workers: int | None = None,
        kernel: str | None = None,
        cluster_timeout: float = 300.0,
        chunk_seconds: float = CHUNK_SECONDS,
        prefetch_seconds: float = PREFETCH_SECONDS,
        connect_timeout: float = CONNECT_TIMEOUT_SECONDS,
    ) -> None:
        self.cluster = cluster
        self.local = cluster == LOCAL
        if self.local and (workers is None or workers < 1):
            raise ValueError("a local cluster needs a number of workers (at least 1)")
        self.size = workers or 1
        self.kernel_name = kernel or "auto"
        self.cluster_timeout = cluster_timeout
        self.chunk_seconds = chunk_seconds
        self.prefetch_seconds = prefetch_seconds
        self.connect_timeout = connect_timeout
        self._kernel_wanted = kernel
        # Event-loop side.
        self._handles: dict[str, JobHandle] = {}
        self._events = queue.SimpleQueue()
        self._hashrate = 0.0
        self._closing = False
        # Dask-thread side (touched only on the pool's own loop; the layers declare the types).
        self._thread: threading.Thread | None = None
        self._loop = None
        self._started: concurrent.futures.Future[None] = concurrent.futures.Future()
        self._wake = None
        self._client = None
        self._local_cluster = None
        self._reconnecting = None
        self._scheduler = Scheduler()
        self._jobs = set()
        self._workers = {}
        self._outs = {}
        self._keys_of = {}
        self._waiting_since = {}
        self._waiting = "connecting to the cluster"
        self._calibration_error = None
        self._serial = itertools.count()
        self._background = set()
        self._shut = False
        self.chunks_sent = 0
        self.workers_lost = 0

    # -- lifecycle (event loop) ---------------------------------------------------------------

    @classmethod
    @asynccontextmanager
    async def open(
        cls,
        cluster: str,
        *,
        workers: int | None = None,
        kernel: str | None = None,
        cluster_timeout: float = 300.0,
        **options: float,
    ) -> AsyncIterator[DaskPool]:
        """Connect (or start the local cluster), measure the workers, run until the end."""
        async with (
            cls.connect(
                cluster, workers=workers, kernel=kernel, cluster_timeout=cluster_timeout, **options
            ) as self,
            self.delivering(),
        ):
            yield self

    @classmethod
    @asynccontextmanager
    async def connect(
        cls,
        cluster: str,
        *,
        workers: int | None = None,
        kernel: str | None = None,
        cluster_timeout: float = 300.0,
        **options: float,
    ) -> AsyncIterator[DaskPool]:
        """`open` in two steps, this one first: connect, or start the local cluster, and
        measure the workers (a `ClusterError` if that fails); closed on exit. It runs no task
        group, so a server can connect before opening what does (the error is then not
        wrapped in an exception group), and enter `delivering` later."""
        self = cls(
            cluster, workers=workers, kernel=kernel, cluster_timeout=cluster_timeout, **options
        )
        await anyio.to_thread.run_sync(self._start)
        try:
            yield self
        finally:
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(self._close)

    @asynccontextmanager
    async def delivering(self) -> AsyncIterator[DaskPool]:
        """Jobs' progress and outcomes reach their handles on this event loop while inside;
        leaving closes the pool (searches still running end as FAILED, delivered first)."""
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._pump)
            try:
                yield self
            finally:
                with anyio.CancelScope(shield=True):
                    await anyio.to_thread.run_sync(self._close)

    def _start(self) -> None:
        self._thread = threading.Thread(target=self._thread_main, name="pow-dask", daemon=True)
        self._thread.start()
        try:
            self._started.result()
        except BaseException:
            self._thread.join()
            raise

    def _close(self) -> None:
        """Cancel every task, end every search as FAILED, close the client. Idempotent."""
        self._closing = True
        if self._thread is not None and self._thread.is_alive():
            if self._loop is not None:
                with contextlib.suppress(RuntimeError):  # the loop already ended
                    self._loop.call_soon_threadsafe(self._wake_up)
            self._thread.join()
        self._events.put(None)  # the pump must not block the exit

    async def aclose(self) -> None:
        await anyio.to_thread.run_sync(self._close)

    # -- what callers see (event loop) --------------------------------------------------------

    @property
    def hashrate(self) -> float:
        return self._hashrate

    def submit(
        self, job_id: str, task: SearchTask, on_progress: ProgressCallback | None = None
    ) -> JobHandle:
        handle = JobHandle(job_id, on_progress)
        self._handles[job_id] = handle
        self._post(self._add, job_id, task)
        return handle

    def cancel(self, job_id: str) -> None:
        self._post(self._command, job_id, lambda: self._scheduler.cancel(job_id))

    def stop(self, job_id: str) -> None:
        self._post(self._command, job_id, lambda: self._scheduler.stop(job_id))

    def set_difficulty(self, job_id: str, difficulty: int) -> None:
        self._post(
            self._command, job_id, lambda: self._scheduler.set_difficulty(job_id, difficulty)
        )

    def set_rank(self, job_id: str, rank: int) -> None:
        # Chunks go out in the order of the same `Scheduler` as the local pool's (each free
        # worker takes the next chunk it hands out), so the planner's rank orders the cluster's
        # work too, from the next chunk on; chunks already out finish first.
        self._post(self._scheduler.set_rank, job_id, rank)

    def _post(self, command: Callable[..., None], *args: Any) -> None:
        if self._closing or self._loop is None:
            raise RuntimeError("the Dask pool is shut down")
        self._loop.call_soon_threadsafe(command, *args)

    async def _pump(self) -> None:
        await deliver_events(self._events, self._handles)

    # -- the pool's thread --------------------------------------------------------------------

    def _thread_main(self) -> None:
        asyncio.run(self._main())

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        try:
            await self._connect_first()
        except BaseException as exc:
            await self._shutdown()
            self._started.set_exception(exc)
            return
        self._started.set_result(None)
        try:
            await self._serve()
        except Exception:
            log.exception("the Dask pool crashed")
        finally:
            await self._shutdown()

    async def _serve(self) -> None:
        assert self._wake is not None
        next_tick = 0.0
        while not self._closing:
            self._wake.clear()
            now = time.monotonic()
            if now >= next_tick:
                try:
                    await self._tick()
                except Exception:  # a surprise from Dask: keep the jobs, look again later
                    log.warning("looking at the Dask cluster failed", exc_info=True)
                next_tick = time.monotonic() + TICK_SECONDS
            when = min(self._dispatch(), next_tick)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), max(0.0, when - time.monotonic()))

    async def _tick(self) -> None:
        await self._refresh_workers()
        self._update_state()
        self._check_timeouts()

    async def _shutdown(self) -> None:
        if self._shut:
            return
        self._shut = True
        self._closing = True
        futures = [out.future for out in self._outs.values()]
        self._emit(self._scheduler.cancel_all("the Dask pool was shut down"))
        client, self._client = self._client, None
        if self._reconnecting is not None:
            self._reconnecting.cancel()
        try:
            if client is not None:
                if futures and client.status == "running":
                    with contextlib.suppress(Exception):
                        await client.cancel(futures, reason="pow-mcp stopped")
                with contextlib.suppress(Exception):
                    await client.close(timeout=5)
            if self._local_cluster is not None:
                with contextlib.suppress(Exception):
                    await self._local_cluster.close(timeout=10)
        finally:
            for task in list(self._background):
                task.cancel()
        if self._started.done() and self._started.exception() is None:
            log.info("Dask pool stopped")
