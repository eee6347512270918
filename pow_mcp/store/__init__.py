"""Job records and where they live: memory, a JSON file, SQLite or PostgreSQL.

    async with open_store(StoreSettings(Path("data/jobs"))) as store:
        await store.create([record])      # durable when this returns
        ...

`store` needs nothing from `pow` and never imports `server`.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import anyio

from pow_mcp.store.api import (
    DataDirError,
    JobExistsError,
    JobNotFoundError,
    JobStore,
    StoreClosedError,
    StoreConfigError,
    StoreError,
    StoreWriteError,
)
from pow_mcp.store.jsonfile import JOBS_FILE, JsonFileJobStore
from pow_mcp.store.memory import MemoryJobStore
from pow_mcp.store.query import JobQuery
from pow_mcp.store.record import (
    ACTIVE,
    ANY_INSTANCE,
    INTERRUPTED_ERROR,
    TERMINAL,
    UNFINISHED,
    FutureRecordError,
    JobRecord,
    JobResult,
    JobStatus,
    Progress,
    ProofOfWork,
    WaitingInfo,
    utc_now,
)
from pow_mcp.store.url import parse_database_url

if TYPE_CHECKING:  # SQLAlchemy is imported only when a database is used
    from pow_mcp.store.sql.migrate import SchemaAction

DEFAULT_LEASE_SECONDS = 15.0


def new_instance_id() -> str:
    """A fresh server-instance id: the pid (for people reading records) and random hex."""
    return f"{os.getpid()}-{secrets.token_hex(4)}"


@dataclass(frozen=True)
class StoreSettings:
    """Which store: the JSON file in `data_dir` (default), memory, or a database URL."""

    data_dir: Path
    persist: bool = True
    database_url: str | None = None
    lease_seconds: float = DEFAULT_LEASE_SECONDS
    instance_id: str | None = None

    def check(self) -> None:
        """`StoreConfigError` for settings that cannot work together."""
        if self.database_url is not None:
            if not self.persist:
                raise StoreConfigError(
                    "PERSIST_JOBS=false and JOBS_DATABASE_URL are both set: unset one (memory "
                    "only, or the database)"
                )
            parse_database_url(self.database_url, self.data_dir)
        if not self.lease_seconds > 0:
            raise StoreConfigError("JOBS_LEASE_SECONDS must be greater than 0")

    def describe(self) -> str:
        """Where jobs live, for the start-up line (never with a password)."""
        if not self.persist:
            return "persistence off (PERSIST_JOBS=false): jobs are kept in memory only"
        if self.database_url is None:
            return f"jobs file {self.data_dir.resolve() / JOBS_FILE}"
        url = parse_database_url(self.database_url, self.data_dir)
        where = url.path if url.path is not None else url.display
        return f"{url.dialect} database {where}"


async def connect(
    settings: StoreSettings, *, serving: bool = True, create_schema: bool = False
) -> JobStore:
    """The configured store, open; without its background work (see `open_store`).

    A server (`serving`) migrates a database and holds a lease on it; a command-line tool
    does neither (it needs the current schema, and owns no jobs). With `create_schema`, a
    tool gives a database that has no schema yet the current one; an older schema is still
    refused (that is `migrate`'s business).
    """
    settings.check()
    instance_id = settings.instance_id or new_instance_id()
    if not settings.persist:
        return MemoryJobStore(instance_id)
    if settings.database_url is None:
        if not (serving or create_schema or settings.data_dir.is_dir()):
            # A tool that only reads creates nothing: a mistyped path leaves nothing behind.
            raise StoreConfigError(
                f"there is no jobs data directory {settings.data_dir.absolute()}: check "
                "JOBS_DATA_DIR or --data-dir (a server or `pow-mcp db import` creates it)"
            )
        return await JsonFileJobStore.open(settings.data_dir, instance_id)
    from pow_mcp.store.sql.store import SqlJobStore  # SQLAlchemy only when a database is used

    url = parse_database_url(settings.database_url, settings.data_dir)
    schema: SchemaAction = "upgrade" if serving else "create" if create_schema else "check"
    return await SqlJobStore.open(
        url, instance_id, settings.lease_seconds, schema=schema, register=serving
    )


async def migrate(settings: StoreSettings) -> tuple[str | None, str | None]:
    """Bring a database's schema up to date: (revision before, after); (None, None) for
    stores without a schema."""
    settings.check()
    if not settings.persist or settings.database_url is None:
        return None, None
    from pow_mcp.store.sql.store import SqlJobStore

    url = parse_database_url(settings.database_url, settings.data_dir)
    store = await SqlJobStore.open(url, new_instance_id(), settings.lease_seconds, register=False)
    await store.close()
    return store.migrated_from, store.schema_version


@asynccontextmanager
async def open_store(settings: StoreSettings, *, serving: bool = True) -> AsyncIterator[JobStore]:
    """The store with its background work (watching other processes' changes; a server's
    lease), closed on exit; `serving` as for `connect`."""
    store = await connect(settings, serving=serving)
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(store.run_background)
            try:
                yield store
            finally:
                tg.cancel_scope.cancel()
    finally:
        await store.close()


__all__ = [
    "ACTIVE",
    "ANY_INSTANCE",
    "INTERRUPTED_ERROR",
    "JOBS_FILE",
    "TERMINAL",
    "UNFINISHED",
    "DataDirError",
    "FutureRecordError",
    "JobExistsError",
    "JobNotFoundError",
    "JobQuery",
    "JobRecord",
    "JobResult",
    "JobStatus",
    "JobStore",
    "JsonFileJobStore",
    "MemoryJobStore",
    "Progress",
    "ProofOfWork",
    "StoreClosedError",
    "StoreConfigError",
    "StoreError",
    "StoreSettings",
    "StoreWriteError",
    "WaitingInfo",
    "connect",
    "migrate",
    "new_instance_id",
    "open_store",
    "utc_now",
]
