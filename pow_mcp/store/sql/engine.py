"""SQLite and PostgreSQL job stores: one SQLAlchemy Core query layer for both.

Every operation is one transaction, run in a worker thread on a synchronous SQLAlchemy
engine: SQLite through one connection per process (WAL, `synchronous=FULL`, write
transactions `BEGIN IMMEDIATE`), PostgreSQL through a small connection pool (psycopg 3).
A transition is a conditional `UPDATE ... WHERE status IN (...) [AND owner = ...]
RETURNING`, so the database decides which of two racing callers wins.

(SQLAlchemy's async engines were measured first: a primary-key read cost 0.65 ms through
aiosqlite against 0.19 ms for the same statement on a sync engine in one thread hop, and a
durable insert 0.87 ms against 0.33 ms; the query layer is the same Core either way.)

Other processes' writes are noticed through `PRAGMA data_version` (SQLite, polled) or
LISTEN/NOTIFY (PostgreSQL): `wait_for_change` wakes within about 0.1 s.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import socket
import sqlite3
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import anyio
from pydantic import ValidationError
from sqlalchemy import (
    ColumnElement,
    Connection,
    Engine,
    Row,
    and_,
    case,
    create_engine,
    delete,
    event,
    func,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.pool import QueuePool, StaticPool

from pow_mcp.store.api import (
    JobExistsError,
    JobStore,
    StoreClosedError,
    StoreConfigError,
    StoreError,
    StoreWriteError,
)
from pow_mcp.store.jsonfile.file import ensure_dir
from pow_mcp.store.query import Expiry, JobQuery
from pow_mcp.store.record import (
    ACTIVE,
    TERMINAL,
    FutureRecordError,
    JobRecord,
    JobStatus,
    utc_now,
)
from pow_mcp.store.sql import migrate
from pow_mcp.store.sql.leases import LeaseJudge, Peer
from pow_mcp.store.sql.tables import instances, job_tags, jobs
from pow_mcp.store.transitions import Change, Condition, _Any
from pow_mcp.store.url import VARIABLE, DatabaseUrl, mask

log = logging.getLogger(__name__)

T = TypeVar("T")
CHANNEL = "pow_jobs"  # NOTIFY channel: every write announces itself here
WATCH_SECONDS = 0.1  # SQLite: how often data_version is polled
LISTEN_RETRY_SECONDS = 1.0
BUSY_TIMEOUT_MS = 10_000
PG_POOL_SIZE = 4
_TERMINAL = [s.value for s in TERMINAL]
_ACTIVE = [s.value for s in ACTIVE]

# Record fields that live in columns, not in the `record` JSON.
_COLUMN_FIELDS = frozenset(
    {
        "job_id",
        "status",
        "created_at",
        "updated_at",
        "completed_at",
        "owner",
        "principal",
        "batch_id",
        "task_id",
        "tags",
        "run_after",
        "keep_until",
    }
)


def _body(record: JobRecord) -> dict[str, Any]:
    return record.model_dump(mode="json", exclude=set(_COLUMN_FIELDS))


def _row_values(record: JobRecord) -> dict[str, Any]:
    return {
        "id": record.job_id,
        "status": record.status.value,
        "priority": record.priority,
        "created_at": record.created_at,
        "updated_at": record.updated_at,
        "completed_at": record.completed_at,
        "owner": record.owner,
        "principal": record.principal,
        "batch_id": record.batch_id,
        "task_id": record.task_id,
        "tags": list(record.tags),
        "blocked": bool(record.blocked_by),
        "run_after": record.run_after,
        "keep_until": record.keep_until,
        "version": 0,
        "record": _body(record),
    }


UNREADABLE = "__pow_mcp_unreadable__"


class UnreadableRecordError(StoreError):
    """A job's stored JSON is damaged; its row is left as it is."""


def _lenient_json(text: str) -> Any:
    # A damaged value reads as a marker instead of failing the whole query, so one bad row
    # costs its own job only (SQLite: the file itself may have been damaged).
    try:
        return json.loads(text)
    except ValueError as exc:
        return {UNREADABLE: str(exc)}


def _record(row: Row[Any]) -> JobRecord:
    for name in ("record", "tags"):
        value = getattr(row, name)
        if isinstance(value, dict) and UNREADABLE in value:
            raise UnreadableRecordError(
                f"job {row.id}: its stored {name} is not JSON ({value[UNREADABLE]}); the row "
                "is left as it is"
            )
    data = dict(row.record)
    data.update(
        job_id=row.id,
        status=row.status,
        created_at=row.created_at,
        updated_at=row.updated_at,
        completed_at=row.completed_at,
        owner=row.owner,
        principal=row.principal,
        batch_id=row.batch_id,
        task_id=row.task_id,
        tags=row.tags,
        run_after=row.run_after,
        keep_until=row.keep_until,
    )
    try:
        return JobRecord.model_validate(data)
    except ValidationError as exc:
        cause = exc.errors()[0].get("ctx", {}).get("error")
        if isinstance(cause, FutureRecordError):
            raise cause from None
        raise


def _where(job_id: str, when: Condition) -> list[ColumnElement[bool]]:
    conditions = [jobs.c.id == job_id, jobs.c.status.in_([s.value for s in when.statuses])]
    if not isinstance(when.owner, _Any):
        conditions.append(jobs.c.owner == when.owner)  # None renders IS NULL
    return conditions


def _values(change: Change, now: datetime) -> dict[str, Any]:
    """The SET clause of `change`: mirrors `store.transitions.apply_change`."""
    values: dict[str, Any] = {"updated_at": now, "version": jobs.c.version + 1}
    if change.record is not None:
        values["record"] = _body(change.record)
        values["blocked"] = bool(change.record.blocked_by)
        values["run_after"] = change.record.run_after
    if change.status is not None:
        values["status"] = change.status.value
        if change.status in TERMINAL:
            values["completed_at"] = case(
                (jobs.c.status.in_(_TERMINAL), jobs.c.completed_at), else_=now
            )
    if not isinstance(change.owner, _Any):
        values["owner"] = change.owner
    return values


def _query_where(query: JobQuery) -> list[ColumnElement[bool]]:
    where: list[ColumnElement[bool]] = []
    if query.statuses is not None:
        where.append(jobs.c.status.in_([s.value for s in query.statuses]))
    if query.batch_id is not None:
        where.append(jobs.c.batch_id == query.batch_id)
    if query.tasks_only:
        where.append(jobs.c.task_id.is_not(None))
    if query.id_prefix:
        where.append(jobs.c.id.startswith(query.id_prefix, autoescape=True))
    if query.created_after is not None:
        where.append(jobs.c.created_at > query.created_after)
    if query.created_before is not None:
        where.append(jobs.c.created_at < query.created_before)
    if query.visible_to is not None:
        where.append(or_(jobs.c.principal.is_(None), jobs.c.principal == query.visible_to))
    if query.tags:
        tagged = (
            select(job_tags.c.job_id)
            .where(job_tags.c.tag.in_(sorted(query.tags)))
            .group_by(job_tags.c.job_id)
            .having(func.count() == len(query.tags))
        )
        where.append(jobs.c.id.in_(tagged))
    return where


def _order(query: JobQuery) -> list[Any]:
    first = {"created_at": jobs.c.created_at, "updated_at": jobs.c.updated_at}.get(
        query.sort_by, jobs.c.priority
    )
    columns = (
        [first, jobs.c.created_at, jobs.c.id]
        if first is not jobs.c.created_at
        else [
            jobs.c.created_at,
            jobs.c.id,
        ]
    )
    return [c.desc() if query.descending else c.asc() for c in columns]


def _chunks(items: Sequence[str], size: int = 500) -> Iterator[Sequence[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


class SqlJobStore(JobStore):
    """Jobs in a SQLite file or a PostgreSQL database. Create with `await SqlJobStore.open`."""

    def __init__(self, url: DatabaseUrl, instance_id: str, lease_seconds: float) -> None:
        super().__init__(instance_id)
        self.url = url
        self.kind = url.dialect
        self._engine = self._create_engine(url)
        self._writer = self._engine.execution_options(pow_write=True)
        self._limiter = anyio.CapacityLimiter(1 if url.dialect == "sqlite" else PG_POOL_SIZE)
        self._judge = LeaseJudge(lease_seconds)
        self._changed = anyio.Event()
        self._closed = False
        self._data_version: int | None = None
        self.schema_version: str | None = None
        self.migrated_from: str | None = None
        self._registered = False

    @classmethod
    async def open(
        cls,
        url: DatabaseUrl,
        instance_id: str,
        lease_seconds: float,
        *,
        migrate: bool = True,
        register: bool = True,
    ) -> SqlJobStore:
        """Connect, check and (with `migrate`) migrate the database, and (with `register`)
        hold a lease as a server instance; a `StoreConfigError` naming JOBS_DATABASE_URL if
        that cannot be done. Without `migrate`, a schema that is not current is refused."""
        self = cls(url, instance_id, lease_seconds)
        try:
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(
                    self._sync_open, migrate, register, limiter=self._limiter
                )
        except BaseException:
            self._engine.dispose()
            raise
        log.info(
            "job store %s (schema %s) opened as instance %s",
            url.display,
            self.schema_version,
            instance_id,
        )
        return self

    @property
    def location(self) -> str:
        return str(self.url.path) if self.url.path is not None else self.url.display

    # -- connections -------------------------------------------------------------------------

    @staticmethod
    def _create_engine(url: DatabaseUrl) -> Engine:
        if url.dialect == "sqlite":
            engine = create_engine(
                url.sqlalchemy_url,
                poolclass=StaticPool,  # one connection per process
                connect_args={"check_same_thread": False, "timeout": BUSY_TIMEOUT_MS / 1000},
                json_deserializer=_lenient_json,
            )
            event.listen(engine, "connect", _sqlite_connect)
            event.listen(engine, "begin", _sqlite_begin)
            return engine
        return create_engine(
            url.sqlalchemy_url,
            poolclass=QueuePool,
            pool_size=PG_POOL_SIZE,
            max_overflow=0,
            pool_pre_ping=True,  # a database that restarted: reconnect instead of failing
            connect_args={"connect_timeout": 10, "application_name": "pow-mcp"},
        )

    async def _read(self, fn: Callable[[Connection], T]) -> T:
        return await self._call(fn, write=False)

    async def _write(self, fn: Callable[[Connection], T], *, notify: bool = True) -> T:
        return await self._call(fn, write=True, notify=notify)

    async def _call(self, fn: Callable[[Connection], T], *, write: bool, notify: bool = False) -> T:
        if self._closed:
            raise StoreClosedError("the job store is closed")
        try:
            return await anyio.to_thread.run_sync(
                self._sync_call, fn, write, notify, limiter=self._limiter
            )
        except (StoreError, FutureRecordError):
            raise
        except SQLAlchemyError as exc:
            what = "write to" if write else "read"
            reason = mask(str(getattr(exc, "orig", None) or exc).strip(), self.url)
            error_type = StoreWriteError if write else StoreError
            message = f"could not {what} the jobs database {self.location}: {reason}"
            raise error_type(message) from None

    def _sync_call(self, fn: Callable[[Connection], T], write: bool, notify: bool) -> T:
        if write:
            with self._writer.begin() as conn:
                result = fn(conn)
                if notify and self.kind == "postgresql":  # delivered when this commits
                    conn.execute(select(func.pg_notify(CHANNEL, self.instance_id)))
                return result
        with self._engine.connect() as conn:
            return fn(conn)

    # -- opening -----------------------------------------------------------------------------

    def _sync_open(self, upgrade: bool, register: bool) -> None:
        deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
        pause = 0.02
        while True:
            try:
                return self._sync_open_once(upgrade, register)
            except (SQLAlchemyError, sqlite3.Error) as exc:
                # SQLite answers "database is locked" at once, whatever busy_timeout says, in
                # a few cases (switching to WAL, or recovering a WAL, while another process
                # opens the same new file): every step here can simply run again.
                busy = "database is locked" in str(getattr(exc, "orig", None) or exc)
                if self.kind != "sqlite" or not busy or time.monotonic() > deadline:
                    raise self._open_error(exc) from None
                log.debug("the SQLite file %s is busy; opening it again", self.location)
            time.sleep(pause)
            pause = min(pause * 2, 0.5)

    def _sync_open_once(self, upgrade: bool, register: bool) -> None:
        try:
            if self.url.path is not None:
                self._prepare_sqlite_file(self.url.path)
            if upgrade:
                with self._writer.begin() as conn:
                    self.migrated_from, self.schema_version = migrate.upgrade(conn)
            else:
                self._check_schema()
            if register:
                self._register()
        except migrate.SchemaTooNewError as exc:
            message = f"{VARIABLE}: the database {self.location} is refused: {exc}"
            raise StoreConfigError(message) from None
        except OSError as exc:
            raise self._open_error(exc) from None

    def _check_schema(self) -> None:
        with self._engine.connect() as conn:
            self.schema_version = migrate.current_revision(conn)
        if self.schema_version != migrate.HEAD:
            raise StoreConfigError(
                f"{VARIABLE}: the database {self.location} has schema "
                f"{self.schema_version or '(none)'}, this pow-mcp uses {migrate.HEAD}: run "
                "`pow-mcp db migrate` (a server does it when it starts)"
            )

    def _prepare_sqlite_file(self, file: Path) -> None:
        if sqlite3.sqlite_version_info < (3, 35, 0):  # RETURNING, which every transition uses
            raise StoreConfigError(
                f"{VARIABLE}: this Python's SQLite is {sqlite3.sqlite_version}; pow-mcp needs "
                "3.35 or newer. Use the JSON file (unset the variable) or PostgreSQL instead"
            )
        try:
            ensure_dir(file.parent)
            if not file.exists():
                os.close(os.open(file, os.O_RDWR | os.O_CREAT, 0o600))
        except OSError as exc:
            raise StoreConfigError(
                f"{VARIABLE}: cannot create the SQLite file {file} ({exc.strerror}); choose a "
                "writable place"
            ) from None
        for where in (file, file.parent):  # WAL mode writes -wal and -shm files beside it
            if not os.access(where, os.W_OK):
                raise StoreConfigError(
                    f"{VARIABLE}: the SQLite file {file} cannot be written ({where} is "
                    "read-only): make the file and its directory writable, or point the "
                    "variable elsewhere"
                )
        # Outside any transaction (raw connection): quick_check only reads, so a damaged
        # file is left exactly as it is; WAL mode is switched on only once the file is sound.
        raw = self._engine.raw_connection()
        try:
            cursor = raw.cursor()
            cursor.execute("PRAGMA quick_check")
            row = cursor.fetchone()
            verdict = None if row is None else row[0]
            if verdict != "ok":
                raise StoreConfigError(
                    f"{VARIABLE}: the SQLite file {file} fails its integrity check ({verdict}); "
                    "it was left untouched. Restore it from a backup, or point the variable "
                    "elsewhere"
                )
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.close()
        finally:
            raw.close()

    def _open_error(self, exc: BaseException) -> StoreConfigError:
        reason = mask(str(getattr(exc, "orig", None) or exc).strip().splitlines()[0], self.url)
        if self.kind == "sqlite":
            lowered = reason.lower()
            if "readonly" in lowered or "read-only" in lowered:
                hint = "the file or its directory is read-only: make it writable"
            elif "locked" in lowered:
                hint = "another program holds a lock on it: stop that program"
            elif "not a database" in lowered or "malformed" in lowered:
                hint = "it is not a SQLite database or is damaged; it was left untouched"
            else:
                hint = "check the path and its permissions"
            return StoreConfigError(
                f"{VARIABLE}: cannot open the SQLite file {self.location} ({reason}): {hint}"
            )
        return StoreConfigError(
            f"{VARIABLE}: cannot use the PostgreSQL database {self.url.display} ({reason}); "
            "check the host, port, database name, user and password, and that the server runs"
        )

    # -- life: leases and watching ------------------------------------------------------------

    def _register(self) -> None:
        now = utc_now()
        with self._writer.begin() as conn:
            conn.execute(delete(instances).where(instances.c.id == self.instance_id))
            self._insert_self(conn, now)
        self._judge.renewed()
        self._registered = True

    async def run_background(self) -> None:
        async with anyio.create_task_group() as tg:
            if self._registered:
                tg.start_soon(self._keep_leases)
            if self.kind == "postgresql":
                tg.start_soon(self._listen)
            else:
                tg.start_soon(self._poll_data_version)

    async def _keep_leases(self) -> None:
        while True:
            await anyio.sleep(self._judge.renew_interval / 2)
            try:
                await self._write(self._sync_renew, notify=False)
                self._judge.renewed()
                gone = self._judge.judge(await self._read(self._sync_peers))
                for peer in gone:
                    # Notified: every instance's orphans just changed.
                    if await self._write(functools.partial(_forget, peer=peer)):
                        log.warning(
                            "instance %s missed its lease renewals: its jobs are recovered",
                            peer.instance_id,
                        )
                        self._signal_change()
            except StoreError as exc:
                log.warning("could not renew this instance's lease: %s", exc)

    def _insert_self(self, conn: Connection, now: datetime) -> None:
        conn.execute(
            insert(instances).values(
                id=self.instance_id,
                host=socket.gethostname(),
                pid=os.getpid(),
                started_at=now,
                renewed_at=now,
                lease_expires_at=now + timedelta(seconds=self._judge.lease_seconds),
                heartbeat=0,
            )
        )

    def _sync_renew(self, conn: Connection) -> None:
        now = utc_now()
        renewed = conn.execute(
            update(instances)
            .where(instances.c.id == self.instance_id)
            .values(
                heartbeat=instances.c.heartbeat + 1,
                renewed_at=now,
                lease_expires_at=self._db_now() + timedelta(seconds=self._judge.lease_seconds),
            )
        ).rowcount
        if not renewed:
            log.error(
                "instance %s was judged gone by a peer (a long pause?); registering again. Jobs "
                "it ran may have been recovered elsewhere and will stop here",
                self.instance_id,
            )
            self._insert_self(conn, now)

    def _sync_peers(self, conn: Connection) -> list[Peer]:
        rows = conn.execute(
            select(
                instances.c.id,
                instances.c.heartbeat,
                (instances.c.lease_expires_at < self._db_now()).label("expired"),
            ).where(instances.c.id != self.instance_id)
        ).all()
        return [Peer(row.id, int(row.heartbeat), bool(row.expired)) for row in rows]

    def _db_now(self) -> Any:
        # PostgreSQL instances may run on several hosts: judge leases by the database's clock.
        return func.now() if self.kind == "postgresql" else utc_now()

    async def _poll_data_version(self) -> None:
        while True:
            await anyio.sleep(WATCH_SECONDS)
            try:
                version = await anyio.to_thread.run_sync(
                    self._sync_data_version, limiter=self._limiter
                )
            except (SQLAlchemyError, sqlite3.Error) as exc:
                log.debug("data_version poll failed: %s", exc)
                continue
            if self._data_version is not None and version != self._data_version:
                self._signal_change()
            self._data_version = version

    def _sync_data_version(self) -> int:
        # data_version moves when *another* connection commits: exactly "someone else wrote".
        raw = self._engine.raw_connection()
        try:
            cursor = raw.cursor()
            cursor.execute("PRAGMA data_version")
            row = cursor.fetchone()
            cursor.close()
            assert row is not None
            return int(row[0])
        finally:
            raw.close()

    async def _listen(self) -> None:
        import psycopg

        while True:
            try:
                async with await psycopg.AsyncConnection.connect(
                    self.url.libpq, autocommit=True, connect_timeout=10
                ) as conn:
                    await conn.execute(f"LISTEN {CHANNEL}")
                    self._signal_change()  # whatever happened while we were not listening
                    async for note in conn.notifies():
                        if note.payload != self.instance_id:
                            self._signal_change()
            except psycopg.Error as exc:
                log.warning(
                    "lost the notification connection to %s (%s); retrying",
                    self.url.display,
                    mask(str(exc), self.url),
                )
            # Until listening again, tell waiters to look every second.
            self._signal_change()
            await anyio.sleep(LISTEN_RETRY_SECONDS)

    def _signal_change(self) -> None:
        self._changed.set()
        self._changed = anyio.Event()

    async def wait_for_change(self) -> None:
        await self._changed.wait()

    async def close(self) -> None:
        if self._closed:
            return
        with anyio.CancelScope(shield=True):
            if self._registered:
                with contextlib.suppress(StoreError):
                    await self._write(
                        lambda conn: conn.execute(
                            delete(instances).where(instances.c.id == self.instance_id)
                        )
                    )
            self._closed = True
            self._signal_change()
            await anyio.to_thread.run_sync(self._engine.dispose, limiter=self._limiter)

    # -- queries -----------------------------------------------------------------------------

    async def get(self, job_id: str) -> JobRecord | None:
        row = await self._read(
            lambda conn: conn.execute(select(jobs).where(jobs.c.id == job_id)).first()
        )
        return None if row is None else _record(row)

    async def get_many(self, job_ids: Sequence[str]) -> dict[str, JobRecord]:
        wanted = list(dict.fromkeys(job_ids))

        def fetch(conn: Connection) -> list[Row[Any]]:
            rows: list[Row[Any]] = []
            for part in _chunks(wanted):
                rows += conn.execute(select(jobs).where(jobs.c.id.in_(part))).all()
            return rows

        return {record.job_id: record for record in self._readable(await self._read(fetch))}

    async def find(self, query: JobQuery) -> tuple[list[JobRecord], int]:
        where = _query_where(query)

        def fetch(conn: Connection) -> tuple[list[Row[Any]], int]:
            total = conn.execute(select(func.count()).select_from(jobs).where(*where)).scalar_one()
            statement = select(jobs).where(*where).order_by(*_order(query))
            rows = conn.execute(statement.limit(query.limit).offset(query.offset)).all()
            return list(rows), int(total)

        rows, total = await self._read(fetch)
        return self._readable(rows), total

    async def runnable(self, owner: str, now: datetime, limit: int) -> list[JobRecord]:
        statement = (
            select(jobs)
            .where(
                jobs.c.owner == owner,
                jobs.c.status == JobStatus.QUEUED.value,
                jobs.c.blocked.is_(False),
                or_(jobs.c.run_after.is_(None), jobs.c.run_after <= now),
            )
            .order_by(jobs.c.priority.desc(), jobs.c.created_at, jobs.c.id)
            .limit(limit)
        )
        return self._readable(await self._read(lambda conn: conn.execute(statement).all()))

    async def owned(self, owner: str, statuses: frozenset[JobStatus]) -> list[JobRecord]:
        statement = select(jobs).where(
            jobs.c.owner == owner, jobs.c.status.in_([s.value for s in statuses])
        )
        return self._readable(await self._read(lambda conn: conn.execute(statement).all()))

    async def count(self, statuses: frozenset[JobStatus], principal: str | None = None) -> int:
        statement = (
            select(func.count())
            .select_from(jobs)
            .where(jobs.c.status.in_([s.value for s in statuses]))
        )
        if principal is not None:
            statement = statement.where(jobs.c.principal == principal)
        return int(await self._read(lambda conn: conn.execute(statement).scalar_one()))

    async def status_counts(self) -> dict[JobStatus, int]:
        statement = select(jobs.c.status, func.count()).group_by(jobs.c.status)
        rows = await self._read(lambda conn: conn.execute(statement).all())
        counts = dict.fromkeys(JobStatus, 0)
        for status, number in rows:
            if status in JobStatus.__members__.values():
                counts[JobStatus(status)] = int(number)
        return counts

    async def orphans(self) -> list[JobRecord]:
        statement = select(jobs).where(
            jobs.c.status.in_(_ACTIVE),
            or_(
                jobs.c.owner.is_(None),
                and_(
                    jobs.c.owner != self.instance_id,
                    jobs.c.owner.not_in(select(instances.c.id)),
                ),
            ),
        )
        return self._readable(await self._read(lambda conn: conn.execute(statement).all()))

    def _readable(self, rows: Sequence[Row[Any]]) -> list[JobRecord]:
        """The rows as records; one this version cannot read is skipped with a warning."""
        records = []
        for row in rows:
            try:
                records.append(_record(row))
            except (FutureRecordError, ValidationError, UnreadableRecordError) as exc:
                log.warning("job %s: skipped, its stored record cannot be read: %s", row.id, exc)
        return records

    # -- the primitives ----------------------------------------------------------------------

    async def _insert(self, records: Sequence[JobRecord]) -> None:
        rows = [_row_values(r) for r in records]
        tags = [{"job_id": r.job_id, "tag": tag} for r in records for tag in r.tags]

        def add(conn: Connection) -> None:
            try:
                conn.execute(insert(jobs), rows)
            except IntegrityError:  # the transaction rolls back: nothing of it is stored
                ids = ", ".join(r["id"] for r in rows[:3]) + (", ..." if len(rows) > 3 else "")
                raise JobExistsError(f"a job with the id {ids} already exists") from None
            if tags:
                conn.execute(insert(job_tags), tags)

        await self._write(add)

    async def _change(
        self, job_id: str, when: Condition, change: Change, now: datetime
    ) -> tuple[bool, JobRecord | None]:
        def apply(conn: Connection) -> tuple[bool, Row[Any] | None]:
            row = conn.execute(
                update(jobs)
                .where(*_where(job_id, when))
                .values(**_values(change, now))
                .returning(*jobs.c)
            ).first()
            if row is not None:
                return True, row
            return False, conn.execute(select(jobs).where(jobs.c.id == job_id)).first()

        applied, row = await self._write(apply)
        return applied, None if row is None else _record(row)

    async def _change_many(
        self, items: Sequence[tuple[str, Condition, Change]], now: datetime
    ) -> list[bool]:
        def apply(conn: Connection) -> list[bool]:
            return [
                conn.execute(
                    update(jobs).where(*_where(job_id, when)).values(**_values(change, now))
                ).rowcount
                == 1
                for job_id, when, change in items
            ]

        return await self._write(apply) if items else []

    async def _delete_all(self) -> int:
        return await self._write(_delete_everything)

    async def _delete_finished(self, expiry: Expiry) -> list[str]:
        finished = func.coalesce(jobs.c.completed_at, jobs.c.updated_at, jobs.c.created_at)
        cutoff, now = expiry.cutoff, expiry.now
        mine = [] if expiry.principal is None else [jobs.c.principal == expiry.principal]

        def remove(conn: Connection) -> list[str]:
            ids = list(
                conn.execute(
                    delete(jobs)
                    .where(
                        jobs.c.status.in_(_TERMINAL),
                        finished <= cutoff,
                        or_(jobs.c.keep_until.is_(None), jobs.c.keep_until <= now),
                        *mine,
                    )
                    .returning(jobs.c.id)
                ).scalars()
            )
            for part in _chunks(ids):
                conn.execute(delete(job_tags).where(job_tags.c.job_id.in_(part)))
            return ids

        return await self._write(remove)


def _delete_everything(conn: Connection) -> int:
    conn.execute(delete(job_tags))
    return int(conn.execute(delete(jobs)).rowcount)


def _forget(conn: Connection, *, peer: Peer) -> bool:
    """Delete a gone instance's row, only if it has not renewed since we judged it."""
    removed = conn.execute(
        delete(instances).where(
            instances.c.id == peer.instance_id, instances.c.heartbeat == peer.heartbeat
        )
    ).rowcount
    return bool(removed)


def _sqlite_connect(dbapi_connection: Any, _record: Any) -> None:
    # Transactions are begun by hand (see _sqlite_begin), not by the sqlite3 module.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA synchronous=FULL")  # a commit is on disk when it returns
    cursor.close()


def _sqlite_begin(conn: Connection) -> None:
    # A write takes the database's write lock up front, so two processes never both read
    # and then fail to upgrade (SQLITE_BUSY); reads take no lock until they read.
    mode = "IMMEDIATE" if conn.get_execution_options().get("pow_write") else "DEFERRED"
    conn.exec_driver_sql(f"BEGIN {mode}")


__all__ = ["SqlJobStore"]
