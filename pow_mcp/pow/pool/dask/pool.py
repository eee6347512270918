"""`DaskPool`: a hashing pool on a Dask cluster, its workers' tasks and its bookkeeping."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import itertools
import logging
import math
import os
import queue
import signal
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from typing import Any, Protocol, TypeVar, cast

import anyio
import dask.config
from dask.context import thread_state  # where the worker puts the running task's key
from distributed import Client, Future, KilledWorker, LocalCluster, WorkerPlugin, get_worker

from pow_mcp.pow.kernels import ChunkResult, SearchKernel, get_kernel
from pow_mcp.pow.kernels.base import search_runs
from pow_mcp.pow.layout import LAYOUTS
from pow_mcp.pow.pool.base import (
    EventQueue,
    HashingPool,
    JobHandle,
    ProgressCallback,
    deliver_events,
)
from pow_mcp.pow.pool.local import _main_module_hidden
from pow_mcp.pow.scheduler import (
    Chunk,
    Event,
    Outcome,
    OutcomeKind,
    Progress,
    Scheduler,
    SearchTask,
)
from pow_mcp.pow.worker import measure_rate

# The pool's one logger, named after its package (the module it was, for log lines and filters).
log = logging.getLogger(__package__)

LOCAL = "local"
CHUNK_SECONDS = 0.5
PREFETCH_SECONDS = 0.15
SLICE_SECONDS = 0.05  # a task looks whether it was cancelled this often
FIRST_CHUNK = 4096  # the smallest chunk, and the least that measures a rate
TICK_SECONDS = 0.5  # how often the worker list, the connection and the timeouts are looked at
CONNECT_TIMEOUT_SECONDS = 10.0  # at most, at start-up and per reconnection attempt
CALIBRATION_TIMEOUT_SECONDS = 60.0


class ClusterError(RuntimeError):
    """The cluster cannot be used at start-up; the message names POW_CLUSTER and the fix."""


# -- what runs on the workers ----------------------------------------------------------------
# Module-level functions: Dask pickles them by reference, so the workers run the code of the
# pow-mcp they have installed (which must know the job's layout: checked at calibration).

_kernels: dict[str | None, SearchKernel] = {}

# (worker address, kernel, found_nonce, hashes, best_nonce, best_zeros, best_hash, seconds)
SearchAnswer = tuple[str, str, int | None, int, int, int, str, float]
# (worker address, kernel, hashes per second of one thread, layouts known)
CalibrationAnswer = tuple[str, str, float, tuple[int, ...]]


def _kernel(name: str | None) -> SearchKernel:
    kernel = _kernels.get(name)
    if kernel is None:
        kernel = _kernels[name] = get_kernel(name)
    return kernel


def calibrate_task(kernel_name: str | None) -> CalibrationAnswer:
    """On a worker: which kernel it uses and how fast one of its threads hashes."""
    kernel = _kernel(kernel_name)
    return (get_worker().address, kernel.name, measure_rate(kernel), LAYOUTS)


def _cancelled() -> bool:
    """Whether the task running in this thread was cancelled: its job ended, or its client
    (the server) went away. Dask cannot interrupt a running task; it marks it "cancelled"
    in the worker's state (the worker state machine, documented but not a stable API). If
    that cannot be read, chunks simply run to their end."""
    try:
        task = get_worker().state.tasks.get(thread_state.key)
    except Exception:
        return False
    return task is not None and task.state == "cancelled"


def search_task(
    prefix: bytes,
    start: int,
    count: int,
    difficulty: int,
    layout: int,
    kernel_name: str | None,
    slices: int = 1,
) -> SearchAnswer:
    """On a worker: hash one chunk (positions of the job's layout) with its kernel, in
    `slices` pieces, stopping early once the task is cancelled (its answer is then
    dropped: an answer that stopped short is never taken for the whole chunk)."""
    kernel = _kernel(kernel_name)
    size = -(-count // max(1, slices))

    def pieces() -> Iterator[tuple[int, int]]:
        for offset in range(0, count, size):
            if offset and _cancelled():
                return
            yield (start + offset, min(size, count - offset))

    began = time.perf_counter()
    r = search_runs(
        pieces(), difficulty, lambda first, n: kernel.search(prefix, first, n, difficulty, layout)
    )
    seconds = time.perf_counter() - began
    address = get_worker().address
    return (
        address,
        kernel.name,
        r.found_nonce,
        r.hashes,
        r.best_nonce,
        r.best_zeros,
        r.best_hash,
        seconds,
    )


class LocalWorkerSetup(WorkerPlugin):
    """For the workers of `POW_CLUSTER=local`, which are this server's children."""

    def setup(self, worker: Any) -> None:
        # fd 1 may be the MCP stdio channel: a stray write from a worker must not corrupt it.
        os.dup2(2, 1)
        # Ctrl-C reaches the whole process group; the server decides how its workers stop.
        with contextlib.suppress(ValueError):  # not the main thread: nothing to ignore there
            signal.signal(signal.SIGINT, signal.SIG_IGN)


# -- the pool ---------------------------------------------------------------------------------

_T = TypeVar("_T")


class _DaskClient(Protocol):
    """What this pool uses of an asynchronous `distributed.Client`, typed (distributed's
    own annotations leave most of it untyped)."""

    status: str  # "running" while connected to the scheduler
    scheduler: Any  # an rpc to the scheduler: `await scheduler.ncores_running()`

    def submit(
        self,
        func: Callable[..., _T],
        *args: Any,
        key: str,
        workers: list[str],
        allow_other_workers: bool,
        pure: bool,
    ) -> Future[_T]: ...

    def cancel(self, futures: list[Future[Any]], *, reason: str) -> Awaitable[None]: ...

    def close(self, timeout: float) -> Awaitable[None]: ...

    def wait_for_workers(self, n_workers: int) -> Awaitable[None]: ...

    def register_plugin(self, plugin: WorkerPlugin, name: str) -> Awaitable[Any]: ...


class _Closable(Protocol):
    def close(self, timeout: float) -> Awaitable[None]: ...


async def _connect(target: str | _Closable, connect_timeout: float) -> _DaskClient:
    """An asynchronous client of a scheduler address or of a local cluster."""
    client = Client(  # type: ignore[no-untyped-call]
        target, asynchronous=True, set_as_default=False, timeout=connect_timeout, name="pow-mcp"
    )
    return cast(_DaskClient, await client)


async def _start_local_cluster(workers: int) -> _Closable:
    """POW_CLUSTER=local: `workers` processes of one thread, tuned for hashing only, since
    here they share the CPUs with the server. Off or slowed down: the statistical profiler
    (a stack sample every 10 ms), the event loops' health check (every 20 ms) and system
    monitor (every 0.5 s), which together took 3-4% of a worker's CPU; no memory limit to
    watch either (a chunk holds a few bytes)."""
    quiet = {
        "distributed.worker.profile.enabled": False,
        "distributed.admin.tick.interval": "1s",
        "distributed.admin.system-monitor.interval": "2s",
    }
    with dask.config.set(quiet):
        cluster = LocalCluster(  # type: ignore[no-untyped-call]
            n_workers=workers,
            threads_per_worker=1,
            processes=True,
            memory_limit=0,
            dashboard_address=":0",  # never a fixed port that another program may hold
            asynchronous=True,
        )
        return cast(_Closable, await cluster)


@dataclass(eq=False)  # identity: one worker of the cluster, by address
class _Worker:
    address: str
    threads: int
    rate: float = 0.0  # hashes per second of one thread, measured
    measured: bool = False  # rate from a real chunk (not only the calibration)
    kernel: str = ""
    ready: bool = False
    usable: bool = True
    calibration: Future[CalibrationAnswer] | None = None
    calibrating: asyncio.Task[None] | None = None
    out: dict[str, _Out] = field(default_factory=dict)


@dataclass(eq=False)
class _Out:
    """A chunk handed to the cluster as the task `key`, pinned (loosely) to `worker`."""

    key: str
    chunk: Chunk
    worker: _Worker
    seconds: float  # expected
    ends_at: float  # expected, time.monotonic()
    future: Future[SearchAnswer]


class DaskPool(HashingPool):
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
        self._events: EventQueue = queue.SimpleQueue()
        self._hashrate = 0.0
        self._closing = False
        # Dask-thread side (touched only on the pool's own loop).
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._started: concurrent.futures.Future[None] = concurrent.futures.Future()
        self._wake: asyncio.Event | None = None
        self._client: _DaskClient | None = None
        self._local_cluster: _Closable | None = None
        self._reconnecting: asyncio.Task[None] | None = None
        self._scheduler = Scheduler()
        self._jobs: set[str] = set()
        self._workers: dict[str, _Worker] = {}
        self._outs: dict[str, _Out] = {}
        self._keys_of: dict[str, set[str]] = {}  # job id -> keys of its chunks out
        self._waiting_since: dict[str, float] = {}  # job id -> when it began to wait
        self._waiting: str | None = "connecting to the cluster"  # why nothing hashes now
        self._calibration_error: str | None = None
        self._serial = itertools.count()
        self._background: set[asyncio.Task[Any]] = set()
        self._shut = False
        self.chunks_sent = 0  # for tests and the benchmark
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

    # -- the pool's thread ----------------------------------------------------------------------

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

    def _wake_up(self) -> None:
        assert self._wake is not None
        self._wake.set()

    def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        """Run `coroutine` on the pool's loop, keeping a reference until it ends."""
        self._loop_task(coroutine)

    def _loop_task(self, coroutine: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        assert self._loop is not None
        task = self._loop.create_task(coroutine)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return task

    async def _connect_first(self) -> None:
        if self.local:
            # spawn re-imports the parent's __main__ in each worker; see _main_module_hidden.
            with _main_module_hidden():
                self._local_cluster = await _start_local_cluster(self.size)
            self._client = await _connect(self._local_cluster, self.connect_timeout)
            await self._client.register_plugin(LocalWorkerSetup(), name="pow-mcp-local")
            await self._client.wait_for_workers(self.size)
        else:
            try:
                self._client = await _connect(self.cluster, self.connect_timeout)
            except (OSError, TimeoutError) as exc:
                raise ClusterError(
                    f"POW_CLUSTER={self.cluster}: no Dask scheduler answered within "
                    f"{self.connect_timeout:g} s ({exc}); start one there (`dask scheduler`, "
                    f"then `dask worker {self.cluster}` on each hashing machine, with "
                    "pow-mcp[dask] installed) or unset POW_CLUSTER to hash on this machine"
                ) from None
        await self._refresh_workers()
        calibrating = [w.calibrating for w in self._workers.values() if w.calibrating]
        if calibrating:
            await asyncio.wait(calibrating, timeout=CALIBRATION_TIMEOUT_SECONDS)
        ready = [w for w in self._workers.values() if w.ready]
        if self._workers and not ready:
            problem = self._calibration_error or "no worker answered"
            raise ClusterError(
                f"POW_CLUSTER={self.cluster}: the Dask workers cannot run pow-mcp's search "
                f"({problem}); install pow-mcp[dask], the same version as this server, on "
                "every worker"
            )
        if not self._workers:
            log.warning(
                "the Dask cluster at %s has no workers yet; jobs wait for some (at most "
                "POW_CLUSTER_TIMEOUT_SECONDS=%g s each)",
                self.cluster,
                self.cluster_timeout,
            )
        self._update_state()

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

    # -- commands (pool's loop) -----------------------------------------------------------------

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
        keys = self._keys_of.pop(job_id, set())
        futures = []
        for key in keys:
            out = self._outs.pop(key)
            out.worker.out.pop(key, None)
            futures.append(out.future)
        if futures and self._client is not None and self._client.status == "running":
            self._spawn(self._cancel(futures, f"job {job_id} ended"))

    async def _cancel(self, futures: list[Future[Any]], reason: str) -> None:
        if self._client is not None:
            with contextlib.suppress(Exception):
                await self._client.cancel(futures, reason=reason)

    # -- workers and the connection (pool's loop) -----------------------------------------------

    async def _tick(self) -> None:
        await self._refresh_workers()
        self._update_state()
        self._check_timeouts()

    async def _refresh_workers(self) -> None:
        client = self._client
        running: dict[str, int] | None = None
        if client is not None and client.status == "running":
            try:
                running = await client.scheduler.ncores_running()
            except Exception as exc:  # the connection broke while asking
                log.debug("asking the scheduler for its workers failed: %r", exc)
        elif (
            not self.local
            and not self._closing
            and self._reconnecting is None
            and (client is None or client.status in ("closed", "closing"))
        ):
            self._reconnecting = asyncio.get_running_loop().create_task(self._reconnect())
        if running is None:
            # No scheduler: its workers are gone with it as far as this pool can tell; the
            # chunks they held come back through their cancelled futures.
            for worker in self._workers.values():
                self._drop_calibration(worker)
            self._workers.clear()
            return
        for address in [a for a in self._workers if a not in running]:
            self._worker_left(self._workers.pop(address))
        for address, threads in running.items():
            if address not in self._workers:
                self._worker_joined(address, max(1, int(threads)))

    async def _reconnect(self) -> None:
        """The client gave up reconnecting by itself: try a new one (until closing)."""
        try:
            old = self._client
            if old is not None:
                with contextlib.suppress(Exception):
                    await old.close(timeout=1)
            try:
                self._client = await _connect(self.cluster, self.connect_timeout)
            except Exception as exc:
                log.debug("reconnecting to the Dask scheduler failed: %r", exc)
            else:
                log.info("reconnected to the Dask scheduler at %s", self.cluster)
        finally:
            self._reconnecting = None
            self._wake_up()

    def _worker_joined(self, address: str, threads: int) -> None:
        assert self._client is not None
        worker = self._workers[address] = _Worker(address, threads)
        # Pinned strictly: the answer must be this worker's; cancelled if it leaves first.
        worker.calibration = self._client.submit(
            calibrate_task,
            self._kernel_wanted,
            key=f"pow-calibrate-{next(self._serial)}",
            workers=[address],
            allow_other_workers=False,
            pure=False,
        )
        worker.calibrating = self._loop_task(self._watch_calibration(worker, worker.calibration))

    async def _watch_calibration(self, worker: _Worker, future: Future[CalibrationAnswer]) -> None:
        try:
            answer: CalibrationAnswer = await future
            _address, kernel, rate, layouts = answer
        except Exception as exc:
            if self._workers.get(worker.address) is worker:
                worker.usable = False
                self._calibration_error = f"{type(exc).__name__}: {exc}"
                log.error(
                    "Dask worker %s cannot run pow-mcp's search, not using it: %s",
                    worker.address,
                    self._calibration_error,
                )
            return
        finally:
            worker.calibration = worker.calibrating = None
        if self._workers.get(worker.address) is not worker:
            return
        missing = sorted(set(LAYOUTS) - set(layouts))
        if missing:
            worker.usable = False
            self._calibration_error = f"its pow-mcp lacks search layouts {missing}"
            log.error(
                "Dask worker %s runs an older pow-mcp (no search layout %s); not using it: "
                "install this server's version there",
                worker.address,
                ", ".join(map(str, missing)),
            )
            return
        worker.kernel, worker.rate, worker.ready = kernel, rate, True
        log.info(
            "Dask worker %s: kernel %s, %.1f M hashes/s per thread, %d thread(s)",
            worker.address,
            kernel,
            rate / 1e6,
            worker.threads,
        )
        self._update_state()
        self._wake_up()

    def _drop_calibration(self, worker: _Worker) -> None:
        if worker.calibration is not None:
            self._spawn(self._cancel([worker.calibration], "worker left"))
            worker.calibration = None

    def _worker_left(self, worker: _Worker) -> None:
        self._drop_calibration(worker)
        if worker.ready and not self._closing:
            self.workers_lost += 1
            log.warning(
                "Dask worker %s left; %d chunk(s) it held are hashed again elsewhere",
                worker.address,
                len(worker.out),
            )

    def _update_state(self) -> None:
        """Recompute the hash rate and kernels; start or end waiting for the cluster."""
        ready = [w for w in self._workers.values() if w.ready and w.usable]
        self._hashrate = sum(w.rate * w.threads for w in ready)
        if ready:
            self.size = sum(w.threads for w in ready)
            self.kernel_name = ",".join(sorted({w.kernel for w in ready}))
        client = self._client
        if client is None or client.status != "running":
            reason = (
                f"waiting for the Dask cluster at {self.cluster}: lost the connection to its "
                "scheduler"
            )
        elif not ready:
            reason = f"waiting for the Dask cluster at {self.cluster}: it has no workers"
        else:
            reason = None
        self._set_waiting(reason)

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

    # -- chunks (pool's loop) -------------------------------------------------------------------

    def _chunk_size(self, worker: _Worker) -> int:
        seconds = self.chunk_seconds
        if not worker.measured:
            # The calibration is a 50 ms sample, maybe taken while the machine was idle: the
            # first chunks are half size, so a wrong rate cannot make one run long.
            seconds /= 2
        return max(FIRST_CHUNK, int(worker.rate * seconds))

    def _dispatch(self) -> float:
        """Hand chunks to workers with room; returns when to look again (monotonic)."""
        next_at = math.inf
        client = self._client
        if self._waiting is not None or client is None or client.status != "running":
            return next_at
        if self._closing:
            return next_at
        now = time.monotonic()
        for worker in self._workers.values():
            if not (worker.ready and worker.usable):
                continue
            while len(worker.out) <= worker.threads:
                if len(worker.out) == worker.threads:  # busy: a spare just before one ends
                    at = min(o.ends_at for o in worker.out.values()) - self.prefetch_seconds
                    if at > now:
                        next_at = min(next_at, at)
                        break
                chunk = self._scheduler.next_chunk(self._chunk_size(worker), now)
                if chunk is None:
                    return math.inf  # no job can use a worker; a new one wakes the loop
                try:
                    self._send(worker, chunk, now)
                except Exception:  # the client closed under us: the next tick sees it
                    log.warning("handing a chunk to Dask failed", exc_info=True)
                    self._emit(self._scheduler.chunk_returned(chunk))
                    return min(next_at, now + TICK_SECONDS)
        return next_at

    def _send(self, worker: _Worker, chunk: Chunk, now: float) -> None:
        assert self._client is not None and self._loop is not None
        seconds = chunk.count / worker.rate
        starts = now
        if len(worker.out) >= worker.threads:  # queued behind the first of its chunks to end
            starts = max(now, min(o.ends_at for o in worker.out.values()))
        key = f"pow-{chunk.job_id}-{chunk.start}-{next(self._serial)}"
        future: Future[SearchAnswer] = self._client.submit(
            search_task,
            chunk.prefix,
            chunk.start,
            chunk.count,
            chunk.difficulty,
            chunk.layout,
            self._kernel_wanted,
            max(1, round(seconds / SLICE_SECONDS)),
            key=key,
            # Loosely: if the worker dies, the scheduler runs the chunk on another one.
            workers=[worker.address],
            allow_other_workers=True,
            pure=False,
        )
        out = _Out(key, chunk, worker, seconds, starts + seconds, future)
        self._outs[key] = out
        worker.out[key] = out
        self._keys_of.setdefault(chunk.job_id, set()).add(key)
        self.chunks_sent += 1
        self._spawn(self._watch(out))

    def _forget(self, out: _Out) -> bool:
        """Take `out` off the books; False if it was not on them (its job ended)."""
        if self._outs.get(out.key) is not out:
            return False
        del self._outs[out.key]
        out.worker.out.pop(out.key, None)
        keys = self._keys_of.get(out.chunk.job_id)
        if keys is not None:
            keys.discard(out.key)
        return True

    async def _watch(self, out: _Out) -> None:
        try:
            answer: SearchAnswer = await out.future
        except concurrent.futures.CancelledError:
            # Not by us (we forget a chunk before cancelling it): the client lost the
            # scheduler, and with it the result. The chunk is pending again, at no cost.
            if self._forget(out):
                self._emit(self._scheduler.chunk_returned(out.chunk))
        except KilledWorker as exc:
            if self._forget(out):
                log.warning(
                    "job %s: chunk %d killed its workers: %s",
                    out.chunk.job_id,
                    out.chunk.start,
                    exc,
                )
                self._emit(self._scheduler.chunk_lost(out.chunk))
        except Exception as exc:
            if self._forget(out):
                if out.future.status != "error":
                    # Not the task's failure: fetching its result failed with the
                    # connection. The chunk is pending again, at no cost.
                    self._emit(self._scheduler.chunk_returned(out.chunk))
                else:
                    log.warning(
                        "job %s: a Dask worker failed chunk %d: %r",
                        out.chunk.job_id,
                        out.chunk.start,
                        exc,
                    )
                    self._emit(self._scheduler.chunk_lost(out.chunk))
        else:
            if self._forget(out):
                self._on_answer(out, answer)
        self._wake_up()

    def _on_answer(self, out: _Out, answer: SearchAnswer) -> None:
        address, kernel, found, hashes, best_nonce, best_zeros, best_hash, seconds = answer
        now = time.monotonic()
        ran_on = self._workers.get(address)
        if ran_on is not None and seconds > 0 and hashes >= FIRST_CHUNK:
            rate = hashes / seconds
            # The first real chunk replaces the calibration (a 50 ms sample); then a moving
            # average, steady under noise and quick to follow a change of load.
            ran_on.rate = rate if not ran_on.measured else 0.5 * (ran_on.rate + rate)
            ran_on.measured = True
            ran_on.kernel = kernel
            self._hashrate = sum(
                w.rate * w.threads for w in self._workers.values() if w.ready and w.usable
            )
        worker = out.worker
        if len(worker.out) >= worker.threads:
            # The worker's queued chunk starts now, behind the one that just came back.
            spare = max(worker.out.values(), key=lambda o: o.ends_at)
            spare.ends_at = now + spare.seconds
        if found is None and hashes < out.chunk.count:
            # Stopped short although nobody cancelled it (the worker thought it was): the
            # rest was not searched, so the whole chunk is searched again.
            log.warning("job %s: chunk %d came back unfinished", out.chunk.job_id, out.chunk.start)
            self._emit(self._scheduler.chunk_returned(out.chunk))
            return
        result = ChunkResult(found, hashes, best_nonce, best_zeros, best_hash)
        self._emit(self._scheduler.chunk_done(out.chunk, result, now))
