"""The SQLite and PostgreSQL job store: the store interface on one SQLAlchemy Core layer.

Every operation is one transaction, run in a worker thread on a synchronous SQLAlchemy
engine (`sql.connection`); the statements are in `sql.queries` (reads) and
`sql.transitions` (writes: the database decides which of two racing callers wins). While the
store is open, a server instance holds a lease (`sql.instances`), and other processes'
writes are noticed (`sql.watch`).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Sequence
from datetime import datetime

import anyio

from pow_mcp.store.api import JobStore
from pow_mcp.store.query import Expiry, JobQuery
from pow_mcp.store.record import JobRecord, JobStatus
from pow_mcp.store.sql import queries, transitions
from pow_mcp.store.sql.connection import Database
from pow_mcp.store.sql.instances import InstanceLease
from pow_mcp.store.sql.migrate import SchemaAction
from pow_mcp.store.sql.rows import readable, record_of, row_values
from pow_mcp.store.sql.watch import ChangeWatch
from pow_mcp.store.transitions import Change, Condition
from pow_mcp.store.url import DatabaseUrl

log = logging.getLogger(__name__)


class SqlJobStore(JobStore):
    """Jobs in a SQLite file or a PostgreSQL database. Create with `await SqlJobStore.open`."""

    def __init__(self, url: DatabaseUrl, instance_id: str, lease_seconds: float) -> None:
        super().__init__(instance_id)
        self.url = url
        self.kind = url.dialect
        self._db = Database(url, instance_id)
        self.outage = self._db.outage  # which knows when the database is unreachable
        self._lease = InstanceLease(self._db, lease_seconds)
        self._watch = ChangeWatch(self._db)
        self.schema_version: str | None = None
        self.migrated_from: str | None = None  # the revision before this open; None: no schema

    @classmethod
    async def open(
        cls,
        url: DatabaseUrl,
        instance_id: str,
        lease_seconds: float,
        *,
        schema: SchemaAction = "upgrade",
        register: bool = True,
    ) -> SqlJobStore:
        """Connect, check the database and do `schema` to its schema (migrate it, create it
        where there is none, or only check it), and (with `register`) hold a lease as a server
        instance; a `StoreConfigError` naming JOBS_DATABASE_URL if that cannot be done. A
        schema that is not current after that is refused."""
        self = cls(url, instance_id, lease_seconds)
        then = self._lease.register if register else None
        try:
            with anyio.CancelScope(shield=True):
                versions = await self._db.in_thread(
                    functools.partial(self._db.open_sync, schema, then)
                )
        except BaseException:
            self._db.engine.dispose()
            raise
        self.migrated_from, self.schema_version = versions
        log.info(
            "job store %s (schema %s) opened as instance %s",
            url.display,
            self.schema_version,
            instance_id,
        )
        return self

    @property
    def location(self) -> str:
        return self._db.location

    # -- life --------------------------------------------------------------------------------

    async def run_background(self) -> None:
        async with anyio.create_task_group() as tg:
            if self._lease.held:
                tg.start_soon(self._lease.keep, self._watch.signal)
            tg.start_soon(self._watch.run)

    async def wait_for_change(self) -> None:
        await self._watch.wait()

    async def close(self) -> None:
        if self._db.closed:
            return
        with anyio.CancelScope(shield=True):
            await self._lease.release()
            self._watch.signal()
            await self._db.close()

    # -- queries -----------------------------------------------------------------------------

    async def get(self, job_id: str) -> JobRecord | None:
        row = await self._db.read(lambda conn: conn.execute(queries.one(job_id)).first())
        return None if row is None else record_of(row)

    async def get_many(self, job_ids: Sequence[str]) -> dict[str, JobRecord]:
        wanted = list(dict.fromkeys(job_ids))
        rows = await self._db.read(functools.partial(queries.many, job_ids=wanted))
        return {record.job_id: record for record in readable(rows)}

    async def find(self, query: JobQuery) -> tuple[list[JobRecord], int]:
        rows, total = await self._db.read(functools.partial(queries.page, query=query))
        return readable(rows), total

    async def runnable(self, owner: str, now: datetime, limit: int) -> list[JobRecord]:
        statement = queries.runnable(owner, now, limit)
        return readable(await self._db.read(lambda conn: conn.execute(statement).all()))

    async def owned(self, owner: str, statuses: frozenset[JobStatus]) -> list[JobRecord]:
        statement = queries.owned(owner, statuses)
        return readable(await self._db.read(lambda conn: conn.execute(statement).all()))

    async def count(self, statuses: frozenset[JobStatus], principal: str | None = None) -> int:
        statement = queries.count(statuses, principal)
        return int(await self._db.read(lambda conn: conn.execute(statement).scalar_one()))

    async def status_counts(self) -> dict[JobStatus, int]:
        statement = queries.status_counts()
        rows = await self._db.read(lambda conn: conn.execute(statement).all())
        counts = dict.fromkeys(JobStatus, 0)
        for status, number in rows:
            if status in JobStatus.__members__.values():
                counts[JobStatus(status)] = int(number)
        return counts

    async def orphans(self) -> list[JobRecord]:
        statement = queries.orphans(self.instance_id)
        return readable(await self._db.read(lambda conn: conn.execute(statement).all()))

    # -- the primitives ----------------------------------------------------------------------

    async def _insert(self, records: Sequence[JobRecord]) -> None:
        rows = [row_values(r) for r in records]
        tags = [{"job_id": r.job_id, "tag": tag} for r in records for tag in r.tags]
        await self._db.write(functools.partial(transitions.insert_jobs, rows=rows, tags=tags))

    async def _change(
        self, job_id: str, when: Condition, change: Change, now: datetime
    ) -> tuple[bool, JobRecord | None]:
        apply = functools.partial(
            transitions.change_one, job_id=job_id, when=when, change=change, now=now
        )
        applied, row = await self._db.write(apply)
        return applied, None if row is None else record_of(row)

    async def _change_many(
        self, items: Sequence[tuple[str, Condition, Change]], now: datetime
    ) -> list[bool]:
        if not items:
            return []
        return await self._db.write(
            functools.partial(transitions.change_many, items=items, now=now)
        )

    async def _delete_all(self) -> int:
        return await self._db.write(transitions.delete_everything)

    async def _delete_finished(self, expiry: Expiry) -> list[str]:
        return await self._db.write(functools.partial(transitions.delete_finished, expiry=expiry))


__all__ = ["SqlJobStore"]
