"""This instance's lease, its row in `instances`: registering it, renewing it while the store
is open, and forgetting the peers `LeaseJudge` finds gone (their jobs become orphans)."""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import socket
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import anyio
from sqlalchemy import Connection, delete, func, insert, select, update

from pow_mcp.store.api import StoreError
from pow_mcp.store.record import utc_now
from pow_mcp.store.sql.connection import Database
from pow_mcp.store.sql.leases import LeaseJudge, Peer
from pow_mcp.store.sql.tables import instances

log = logging.getLogger(__name__)


class InstanceLease:
    """The lease this instance holds on the database as a server instance."""

    def __init__(self, db: Database, lease_seconds: float) -> None:
        self._db = db
        self._judge = LeaseJudge(lease_seconds)
        self.held = False

    @property
    def instance_id(self) -> str:
        return self._db.instance_id

    def register(self) -> None:
        """Take the lease (blocking: from a worker thread, as the store opens)."""
        now = utc_now()
        with self._db.writer.begin() as conn:
            conn.execute(delete(instances).where(instances.c.id == self.instance_id))
            self._insert_self(conn, now)
        self._judge.renewed()
        self.held = True

    async def keep(self, on_forgotten: Callable[[], None]) -> None:
        """Renew the lease and judge the peers', for as long as the store is open;
        `on_forgotten` is called when a gone peer's jobs just became orphans."""
        while True:
            await anyio.sleep(self._judge.renew_interval / 2)
            try:
                await self._db.write(self._sync_renew, notify=False)
                self._judge.renewed()
                gone = self._judge.judge(await self._db.read(self._sync_peers))
                for peer in gone:
                    # Notified: every instance's orphans just changed.
                    if await self._db.write(functools.partial(_forget, peer=peer)):
                        log.warning(
                            "instance %s missed its lease renewals: its jobs are recovered",
                            peer.instance_id,
                        )
                        on_forgotten()
            except StoreError as exc:
                self._db.outage.warning(log, "could not renew this instance's lease: %s", exc)

    async def release(self) -> None:
        """Give the lease up (as the store closes), if it is held and the database answers."""
        if self.held:
            with contextlib.suppress(StoreError):
                await self._db.write(
                    lambda conn: conn.execute(
                        delete(instances).where(instances.c.id == self.instance_id)
                    )
                )

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
        return func.now() if self._db.kind == "postgresql" else utc_now()


def _forget(conn: Connection, *, peer: Peer) -> bool:
    """Delete a gone instance's row, only if it has not renewed since we judged it."""
    removed = conn.execute(
        delete(instances).where(
            instances.c.id == peer.instance_id, instances.c.heartbeat == peer.heartbeat
        )
    ).rowcount
    return bool(removed)
