"""What a running server holds open, opened in order and closed in reverse: the Dask
cluster (with POW_CLUSTER), the job store, the hashing pool, the block clock and the job
manager with its background work (dispatch, progress saves, recovery, periodic cleanup)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

import anyio

from pow_mcp.pow.pool import HashingPool, LocalPool
from pow_mcp.server.config import Config, ConfigError
from pow_mcp.server.jobs.blocks import BlockClock
from pow_mcp.server.jobs.manager import JobManager
from pow_mcp.store import StoreError, open_store

if TYPE_CHECKING:
    from pow_mcp.pow.pool.dask import DaskPool

log = logging.getLogger(__name__)


@asynccontextmanager
async def open_manager(config: Config) -> AsyncIterator[JobManager]:
    """Store, pool, block clock, dispatcher and periodic cleanup, while the server runs."""
    async with (
        open_cluster(config) as cluster,
        open_store(config.store) as store,
        open_pool(config, cluster) as pool,
        anyio.create_task_group() as tg,
    ):
        clock = BlockClock(config.block_height_url, config.block_time_seconds)
        manager = JobManager(config, store, pool, clock, tg)
        await manager.recover_orphans()  # before any client sees the jobs
        tg.start_soon(clock.run, name="block clock")
        tg.start_soon(manager.run_background, name="jobs")
        tg.start_soon(
            _cleanup_forever,
            manager,
            config.retention_seconds,
            min(60.0, max(1.0, config.retention_seconds / 10)),
            name="cleanup",
        )
        try:
            yield manager
        finally:
            with anyio.CancelScope(shield=True):
                await manager.shutdown()
            tg.cancel_scope.cancel()


@asynccontextmanager
async def open_cluster(config: Config) -> AsyncIterator[DaskPool | None]:
    """With POW_CLUSTER, the Dask cluster's pool, connected before the store opens: an
    unreachable cluster is then a one-line ConfigError, not one wrapped by the store's task
    group. None without POW_CLUSTER."""
    if config.cluster is None:
        yield None
        return
    try:  # only here: the optional extra, and a third of a second to import
        from pow_mcp.pow.pool.dask import ClusterError, DaskPool
    except ImportError as exc:
        raise ConfigError(
            f"POW_CLUSTER={config.cluster} needs Dask, pow-mcp's dask extra: in its checkout, "
            f"pip install '.[dask]' (or unset POW_CLUSTER to hash on this machine) ({exc})"
        ) from None
    # Dask logs every connection, worker and client at INFO; the server's log keeps its
    # warnings, and the pool says itself what matters (workers joining, leaving, outages).
    logging.getLogger("distributed").setLevel(logging.WARNING)
    try:
        async with DaskPool.connect(
            config.cluster,
            workers=config.workers,
            kernel=config.kernel,
            cluster_timeout=config.cluster_timeout_seconds,
            connect_timeout=min(10.0, max(1.0, config.cluster_timeout_seconds)),
        ) as pool:
            yield pool
    except ClusterError as exc:  # raised only at start-up: one line, naming the fix
        raise ConfigError(str(exc)) from None


@asynccontextmanager
async def open_pool(config: Config, cluster: DaskPool | None) -> AsyncIterator[HashingPool]:
    """The Dask cluster's pool delivering on this loop, or else the local worker pool."""
    if cluster is not None:
        async with cluster.delivering() as pool:
            yield pool
    else:
        async with LocalPool.open(config.workers, config.kernel) as local:
            yield local


async def _cleanup_forever(manager: JobManager, retention: float, interval: float) -> None:
    """The retention period, applied every `interval` seconds; a failed pass is retried."""
    while True:
        try:
            for job_id in await manager.cleanup(retention):
                log.info("job %s: removed by the periodic cleanup", job_id)
        except StoreError as exc:
            manager.store.outage.warning(
                log, "periodic cleanup of old jobs failed, will retry: %s", exc
            )
        await anyio.sleep(interval)
