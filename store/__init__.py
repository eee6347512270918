"""Job records and their persistence (JSON file, or memory only).

    async with open_store(Path("data/jobs"), persist=True) as store:
        await store.create(record)        # on disk when this returns
        ...

`store` needs nothing from `pow` and never imports `server`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import anyio

from store.base import (
    DataDirError,
    JobExistsError,
    JobNotFoundError,
    JobStore,
    MemoryJobStore,
    StoreClosedError,
    StoreError,
    StoreWriteError,
)
from store.jsonfile import JOBS_FILE, JsonFileJobStore
from store.record import (
    ACTIVE,
    INTERRUPTED_ERROR,
    TERMINAL,
    JobRecord,
    JobResult,
    JobStatus,
    Progress,
    ProofOfWork,
    WaitingInfo,
    utc_now,
)

__all__ = [
    "ACTIVE",
    "INTERRUPTED_ERROR",
    "JOBS_FILE",
    "TERMINAL",
    "DataDirError",
    "JobExistsError",
    "JobNotFoundError",
    "JobRecord",
    "JobResult",
    "JobStatus",
    "JobStore",
    "JsonFileJobStore",
    "MemoryJobStore",
    "Progress",
    "ProofOfWork",
    "StoreClosedError",
    "StoreError",
    "StoreWriteError",
    "WaitingInfo",
    "open_store",
    "utc_now",
]


@asynccontextmanager
async def open_store(
    data_dir: Path,
    *,
    persist: bool,
    debounce_seconds: float = 1.0,
    instance_id: str | None = None,
) -> AsyncIterator[JobStore]:
    """The job store for the server's lifetime; flushed and closed on exit.

    With `persist`, jobs live in `data_dir/jobs.json` (`DataDirError` at once if the
    directory is unusable) and a background task writes debounced changes. Without it,
    jobs live in memory and nothing is written anywhere.
    """
    if not persist:
        memory = MemoryJobStore(instance_id)
        try:
            yield memory
        finally:
            await memory.close()
        return
    store = await JsonFileJobStore.open(
        data_dir, debounce_seconds=debounce_seconds, instance_id=instance_id
    )
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(store.run_writer)
            try:
                yield store
            finally:
                tg.cancel_scope.cancel()
    finally:
        await store.close()  # shielded inside: a cancelled server still flushes
