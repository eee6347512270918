"""Connections to the jobs database: opening it (checks, migration, retries) and running each
operation as one transaction in a worker thread, with SQLAlchemy's errors in the store's words.

SQLite goes through one connection per process (WAL, `synchronous=FULL`, write transactions
`BEGIN IMMEDIATE`), PostgreSQL through a small connection pool (psycopg 3).

(SQLAlchemy's async engines were measured first: a primary-key read cost 0.65 ms through
aiosqlite against 0.19 ms for the same statement on a sync engine in one thread hop, and a
durable insert 0.87 ms against 0.33 ms; the query layer is the same Core either way.)
"""

from __future__ import annotations

import logging
import os
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import anyio
from sqlalchemy import Connection, Engine, create_engine, event, func, select
from sqlalchemy.exc import (
    DBAPIError,
    DisconnectionError,
    InterfaceError,
    OperationalError,
    SQLAlchemyError,
)
from sqlalchemy.exc import TimeoutError as SQLAlchemyTimeoutError
from sqlalchemy.pool import QueuePool, StaticPool

from pow_mcp.store.api import StoreClosedError, StoreConfigError, StoreError, StoreWriteError
from pow_mcp.store.jsonfile.file import ensure_dir
from pow_mcp.store.outage import Outage
from pow_mcp.store.record import FutureRecordError
from pow_mcp.store.sql import migrate
from pow_mcp.store.sql.rows import lenient_json
from pow_mcp.store.url import VARIABLE, DatabaseUrl, mask

log = logging.getLogger(__name__)

T = TypeVar("T")
CHANNEL = "pow_jobs"  # NOTIFY channel: every write announces itself here
BUSY_TIMEOUT_MS = 10_000
PG_POOL_SIZE = 4


class Database:
    """One jobs database: its engine, and the worker threads every operation runs in."""

    def __init__(self, url: DatabaseUrl, instance_id: str) -> None:
        self.url = url
        self.kind = url.dialect
        self.instance_id = instance_id  # what our NOTIFYs carry: our own writes are no news
        self.engine = _create_engine(url)
        self.writer = self.engine.execution_options(pow_write=True)
        self.limiter = anyio.CapacityLimiter(1 if url.dialect == "sqlite" else PG_POOL_SIZE)
        self.closed = False
        self.outage = Outage(self.location, logger=log)

    @property
    def location(self) -> str:
        return str(self.url.path) if self.url.path is not None else self.url.display

    async def read(self, fn: Callable[[Connection], T]) -> T:
        return await self._call(fn, write=False)

    async def write(self, fn: Callable[[Connection], T], *, notify: bool = True) -> T:
        """`fn` in a write transaction; with `notify`, other instances hear of it."""
        return await self._call(fn, write=True, notify=notify)

    async def in_thread(self, fn: Callable[[], T]) -> T:
        """`fn` in one of the engine's worker threads, its errors as they are."""
        return await anyio.to_thread.run_sync(fn, limiter=self.limiter)

    async def close(self) -> None:
        self.closed = True
        await self.in_thread(self.engine.dispose)

    async def _call(self, fn: Callable[[Connection], T], *, write: bool, notify: bool = False) -> T:
        if self.closed:
            raise StoreClosedError("the job store is closed")
        began = self.outage.clock()
        try:
            result = await anyio.to_thread.run_sync(
                self._sync_call, fn, write, notify, limiter=self.limiter
            )
        except (StoreError, FutureRecordError):
            self.outage.reachable(began)
            raise
        except SQLAlchemyError as exc:
            if _unreachable(exc):
                self.outage.failed(began)
            what = "write to" if write else "read"
            reason = reason_of(exc, self.url)
            error_type = StoreWriteError if write else StoreError
            message = f"could not {what} the jobs database {self.location}: {reason}"
            raise error_type(message) from None
        self.outage.reachable(began)
        return result

    def _sync_call(self, fn: Callable[[Connection], T], write: bool, notify: bool) -> T:
        if write:
            with self.writer.begin() as conn:
                result = fn(conn)
                if notify and self.kind == "postgresql":  # delivered when this commits
                    conn.execute(select(func.pg_notify(CHANNEL, self.instance_id)))
                return result
        with self.engine.connect() as conn:
            return fn(conn)

    # -- opening -----------------------------------------------------------------------------

    def open_sync(
        self, schema: migrate.SchemaAction, then: Callable[[], None] | None
    ) -> tuple[str | None, str]:
        """Check the database and do `schema` to its schema (see `migrate.SchemaAction`),
        refusing one that is not current after that, then call `then`; returns (schema
        revision before, after), None for no schema. A `StoreConfigError` naming
        JOBS_DATABASE_URL if that cannot be done."""
        deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
        pause = 0.02
        while True:
            try:
                return self._open_once(schema, then)
            except (SQLAlchemyError, sqlite3.Error, UnicodeDecodeError) as exc:
                # SQLite answers "database is locked" at once, whatever busy_timeout says, in
                # a few cases (switching to WAL, or recovering a WAL, while another process
                # opens the same new file): every step here can simply run again.
                busy = "database is locked" in str(getattr(exc, "orig", None) or exc)
                if self.kind != "sqlite" or not busy or time.monotonic() > deadline:
                    raise self._open_error(exc) from None
                log.debug("the SQLite file %s is busy; opening it again", self.location)
            time.sleep(pause)
            pause = min(pause * 2, 0.5)

    def _open_once(
        self, schema: migrate.SchemaAction, then: Callable[[], None] | None
    ) -> tuple[str | None, str]:
        try:
            if self.url.path is not None:
                self._prepare_sqlite_file(self.url.path, create=schema != "check")
            if schema == "check":
                with self.engine.connect() as conn:
                    version = migrate.current_revision(conn)
                versions = version, self._require_current(version)
            else:
                with self.writer.begin() as conn:
                    before, after = migrate.upgrade(conn, only_if_empty=schema == "create")
                versions = before, self._require_current(after)
            if then is not None:
                then()
            return versions
        except migrate.SchemaTooNewError as exc:
            message = f"{VARIABLE}: the database {self.location} is refused: {exc}"
            raise StoreConfigError(message) from None
        except OSError as exc:
            raise self._open_error(exc) from None

    def _require_current(self, version: str | None) -> str:
        if version != migrate.HEAD:
            raise StoreConfigError(
                f"{VARIABLE}: the database {self.location} has schema "
                f"{version or '(none)'}, this pow-mcp uses {migrate.HEAD}: run "
                "`pow-mcp db migrate` (a server does it when it starts)"
            )
        return version

    def _prepare_sqlite_file(self, file: Path, *, create: bool) -> None:
        """Check (and with `create`, make) the SQLite file before SQLAlchemy opens it. A tool
        that only reads (`create` False) refuses a missing file: a mistyped path must not
        leave an empty database behind."""
        if sqlite3.sqlite_version_info < (3, 35, 0):  # RETURNING, which every transition uses
            raise StoreConfigError(
                f"{VARIABLE}: this Python's SQLite is {sqlite3.sqlite_version}; pow-mcp needs "
                "3.35 or newer. Use the JSON file (unset the variable) or PostgreSQL instead"
            )
        if not create and not file.exists():
            raise StoreConfigError(
                f"{VARIABLE}: there is no SQLite file {file}: check the path (a server, "
                "`pow-mcp db migrate` or `pow-mcp db import` creates it)"
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
        raw = self.engine.raw_connection()
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
        if isinstance(exc, UnicodeDecodeError):
            # SQLite's message quoted bytes of a damaged schema, which sqlite3 cannot decode.
            reason = "malformed database schema"
        else:
            reason = reason_of(exc, self.url)
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


def reason_of(exc: BaseException, url: DatabaseUrl) -> str:
    """A database error's first line, without the password: libpq adds hint lines ("Is the
    server running on that host...?") that would split every log line in two."""
    text = str(getattr(exc, "orig", None) or exc).strip()
    return mask(text.splitlines()[0] if text else type(exc).__name__, url)


def _unreachable(exc: SQLAlchemyError) -> bool:
    """Whether the database could not be reached or lost the connection (PostgreSQL down,
    the network gone, a SQLite file that cannot be read), not refused one statement."""
    if isinstance(exc, DBAPIError):
        return exc.connection_invalidated or isinstance(exc, OperationalError | InterfaceError)
    return isinstance(exc, DisconnectionError | SQLAlchemyTimeoutError)


def _create_engine(url: DatabaseUrl) -> Engine:
    if url.dialect == "sqlite":
        engine = create_engine(
            url.sqlalchemy_url,
            poolclass=StaticPool,  # one connection per process
            connect_args={"check_same_thread": False, "timeout": BUSY_TIMEOUT_MS / 1000},
            json_deserializer=lenient_json,
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
