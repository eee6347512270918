"""The chaos run's fault schedule: faults drawn from the seed and injected one after another
(kill, freeze, PostgreSQL restarts, cut or slowed connections, a full disk)."""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from typing import Any

import anyio
from chaos_servers import Server
from chaos_store import LEASE_SECONDS, Store, fill


@dataclass
class Fault:
    kind: str
    at: float  # seconds since the start of the run
    seconds: float  # how long it lasted
    server: int | None = None
    pid: int | None = None  # the server process it hit


class Faults:
    """Draws faults from the seed and applies them one after another."""

    def __init__(self, rng: random.Random, store: Store, servers: list[Server], t0: float):
        self.rng, self.store, self.servers, self.t0 = rng, store, servers, t0
        self.done: list[Fault] = []
        self.kinds = ["kill", "freeze"]
        if store.postgres is not None:
            self.kinds += ["pg_restart", "pg_cut", "pg_delay"]
        if store.disk is not None:
            self.kinds.append("disk_full")

    async def run(self, until: float) -> None:
        await anyio.sleep(5)  # the first jobs get going
        while time.monotonic() < until:
            kind = self.rng.choice(self.kinds)
            await getattr(self, kind)()
            await anyio.sleep(self.rng.uniform(1, 6))

    def _note(self, kind: str, began: float, **details: Any) -> None:
        fault = Fault(kind, began - self.t0, time.monotonic() - began, **details)
        self.done.append(fault)
        print(f"  {fault.at:7.1f}s  {kind} for {fault.seconds:.1f}s {details}", flush=True)

    def _server(self) -> Server:
        return self.rng.choice(self.servers)

    async def kill(self) -> None:
        server, began = self._server(), time.monotonic()
        pid = server.proc.pid if server.proc else None
        server.kill()
        await anyio.sleep(self.rng.uniform(0.2, 3))
        await server.start()
        self._note("kill", began, server=server.index, pid=pid)

    async def freeze(self) -> None:
        server, began = self._server(), time.monotonic()
        pid = server.proc.pid if server.proc else None
        server.freeze(True)
        try:
            await anyio.sleep(LEASE_SECONDS * self.rng.uniform(1.5, 3))
        finally:
            server.freeze(False)
        self._note("freeze", began, server=server.index, pid=pid)

    async def pg_restart(self) -> None:
        began = time.monotonic()
        pg = self.store.postgres
        await anyio.to_thread.run_sync(pg.stop, self.rng.choice(["fast", "immediate"]))
        await anyio.sleep(self.rng.uniform(0.5, 4))
        await anyio.to_thread.run_sync(pg.start)
        self._note("pg_restart", began)

    async def pg_cut(self) -> None:
        began = time.monotonic()
        assert self.store.proxy is not None
        self.store.proxy.cut(self.rng.uniform(0, 3))
        await anyio.sleep(self.store.proxy.refuse_until - time.monotonic())
        self._note("pg_cut", began)

    async def pg_delay(self) -> None:
        began = time.monotonic()
        assert self.store.proxy is not None
        self.store.proxy.delay = self.rng.uniform(0.1, 1.5)
        try:
            await anyio.sleep(self.rng.uniform(2, 8))
        finally:
            self.store.proxy.delay = 0.0
        self._note("pg_delay", began)

    async def disk_full(self) -> None:
        began = time.monotonic()
        assert self.store.disk is not None
        ballast = await anyio.to_thread.run_sync(fill, self.store.disk)
        try:
            await anyio.sleep(self.rng.uniform(1, 6))
        finally:
            ballast.unlink()
        self._note("disk_full", began)
