"""Noticing other processes' writes: SQLite's `PRAGMA data_version` polled, PostgreSQL's
LISTEN/NOTIFY; `wait` wakes within about 0.1 s."""

from __future__ import annotations

import logging
import sqlite3

import anyio
from sqlalchemy.exc import SQLAlchemyError

from pow_mcp.store.sql.connection import CHANNEL, Database, reason_of

log = logging.getLogger(__name__)

WATCH_SECONDS = 0.1  # SQLite: how often data_version is polled
LISTEN_RETRY_SECONDS = 1.0


class ChangeWatch:
    """A cheap signal that another process may have changed jobs (not a diff)."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self._changed = anyio.Event()
        self._data_version: int | None = None

    def signal(self) -> None:
        """Wake every waiter."""
        self._changed.set()
        self._changed = anyio.Event()

    async def wait(self) -> None:
        await self._changed.wait()

    async def run(self) -> None:
        """Watch for as long as the store is open."""
        if self._db.kind == "postgresql":
            await self._listen()
        else:
            await self._poll_data_version()

    async def _poll_data_version(self) -> None:
        while True:
            await anyio.sleep(WATCH_SECONDS)
            try:
                version = await self._db.in_thread(self._sync_data_version)
            except (SQLAlchemyError, sqlite3.Error) as exc:
                log.debug("data_version poll failed: %s", exc)
                continue
            if self._data_version is not None and version != self._data_version:
                self.signal()
            self._data_version = version

    def _sync_data_version(self) -> int:
        # data_version moves when *another* connection commits: exactly "someone else wrote".
        raw = self._db.engine.raw_connection()
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

        url = self._db.url
        while True:
            began: float | None = self._db.outage.clock()  # of this connection attempt
            try:
                async with await psycopg.AsyncConnection.connect(
                    url.libpq, autocommit=True, connect_timeout=10
                ) as conn:
                    await conn.execute(f"LISTEN {CHANNEL}")
                    self._db.outage.reachable(began)
                    began = None  # from here on, a failure is a working connection lost: news
                    self.signal()  # whatever happened while we were not listening
                    async for note in conn.notifies():
                        if note.payload != self._db.instance_id:
                            self.signal()
            except psycopg.Error as exc:
                self._db.outage.failed(began)
                self._db.outage.warning(
                    log,
                    "lost the notification connection to %s (%s); retrying",
                    url.display,
                    reason_of(exc, url),
                )
            # Until listening again, tell waiters to look every second.
            self.signal()
            await anyio.sleep(LISTEN_RETRY_SECONDS)
