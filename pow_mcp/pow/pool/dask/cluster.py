"""The Dask pool's hold on its cluster: connecting to the scheduler (or starting the local
cluster), the workers it lists and their calibration, reconnecting after an outage.

`ClusterLayer` is the lowest of the layers `DaskPool` is built of (see pow.pool.dask), with
the helpers of the pool's own asyncio loop that every layer uses. The records of the workers
and of the chunks they hold are here too: each refers to the other.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from abc import abstractmethod
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar, cast

import dask.config
from distributed import Client, Future, LocalCluster, WorkerPlugin

from pow_mcp.pow.layout import LAYOUTS
from pow_mcp.pow.pool.base import HashingPool
from pow_mcp.pow.pool.dask.tasks import (
    CalibrationAnswer,
    LocalWorkerSetup,
    SearchAnswer,
    calibrate_task,
)
from pow_mcp.pow.pool.local import _main_module_hidden
from pow_mcp.pow.scheduler import Chunk

# The pool's one logger, whichever of its modules logs: named after the package.
log = logging.getLogger(__package__)

LOCAL = "local"
TICK_SECONDS = 0.5  # how often the worker list, the connection and the timeouts are looked at
CONNECT_TIMEOUT_SECONDS = 10.0  # at most, at start-up and per reconnection attempt
CALIBRATION_TIMEOUT_SECONDS = 60.0


class ClusterError(RuntimeError):
    """The cluster cannot be used at start-up; the message names POW_CLUSTER and the fix."""


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
class Worker:
    address: str
    threads: int
    rate: float = 0.0  # hashes per second of one thread, measured
    measured: bool = False  # rate from a real chunk (not only the calibration)
    kernel: str = ""
    ready: bool = False
    usable: bool = True
    calibration: Future[CalibrationAnswer] | None = None
    calibrating: asyncio.Task[None] | None = None
    out: dict[str, ChunkOut] = field(default_factory=dict)


@dataclass(eq=False)
class ChunkOut:
    """A chunk handed to the cluster as the task `key`, pinned (loosely) to `worker`."""

    key: str
    chunk: Chunk
    worker: Worker
    seconds: float  # expected
    ends_at: float  # expected, time.monotonic()
    future: Future[SearchAnswer]


class ClusterLayer(HashingPool):
    """`DaskPool`'s lowest layer: the pool's own loop, its client and the cluster's workers.

    `DaskPool.__init__` sets the state declared here; all else runs on the pool's loop.
    """

    cluster: str  # "local" or a scheduler address
    local: bool
    cluster_timeout: float
    connect_timeout: float
    _kernel_wanted: str | None
    _hashrate: float  # of the workers ready, read on the event loop
    _closing: bool  # set on either side: nothing new starts
    _loop: asyncio.AbstractEventLoop | None
    _wake: asyncio.Event | None
    _background: set[asyncio.Task[Any]]
    _client: _DaskClient | None
    _local_cluster: _Closable | None
    _reconnecting: asyncio.Task[None] | None
    _workers: dict[str, Worker]
    _calibration_error: str | None
    _serial: itertools.count[int]  # numbers the tasks' keys
    workers_lost: int

    @abstractmethod
    def _set_waiting(self, reason: str | None) -> None:
        """Jobs wait while `reason` says why the cluster cannot hash; None: they go on."""

    # -- the pool's loop ----------------------------------------------------------------------

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

    async def _cancel(self, futures: list[Future[Any]], reason: str) -> None:
        if self._client is not None:
            with contextlib.suppress(Exception):
                await self._client.cancel(futures, reason=reason)

    # -- the connection (pool's loop) ---------------------------------------------------------

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

    # -- workers (pool's loop) ----------------------------------------------------------------

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

    def _worker_joined(self, address: str, threads: int) -> None:
        assert self._client is not None
        worker = self._workers[address] = Worker(address, threads)
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

    async def _watch_calibration(self, worker: Worker, future: Future[CalibrationAnswer]) -> None:
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

    def _drop_calibration(self, worker: Worker) -> None:
        if worker.calibration is not None:
            self._spawn(self._cancel([worker.calibration], "worker left"))
            worker.calibration = None

    def _worker_left(self, worker: Worker) -> None:
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
