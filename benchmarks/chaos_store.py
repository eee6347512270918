"""The chaos run's store, shared by its servers, and the handles its faults need: a PostgreSQL
server of the run's own behind a TCP proxy that cuts or slows connections, or a small tmpfs
under a SQLite or JSON store, to fill up."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pow_mcp.store import StoreSettings

LEASE_SECONDS = 3.0  # the servers' JOBS_LEASE_SECONDS: short, so that faults outlast it


class Proxy:
    """A TCP proxy to PostgreSQL that can cut every connection or slow them down."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream = upstream_port
        self.port = 0
        self.delay = 0.0
        self.refuse_until = 0.0
        self._writers: set[asyncio.StreamWriter] = set()
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        self.cut(0)

    def cut(self, refuse_seconds: float) -> None:
        """Drop every open connection; refuse new ones for `refuse_seconds`."""
        self.refuse_until = time.monotonic() + refuse_seconds
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if time.monotonic() < self.refuse_until:
            writer.transport.abort()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream)
        except OSError:
            writer.transport.abort()
            return
        self._writers |= {writer, up_writer}
        try:
            await asyncio.gather(self._pump(reader, up_writer), self._pump(up_reader, writer))
        finally:
            for end in (writer, up_writer):
                self._writers.discard(end)
                end.transport.abort()

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, asyncio.IncompleteReadError):
            while chunk := await reader.read(65536):
                if self.delay:
                    await asyncio.sleep(self.delay)
                writer.write(chunk)
                await writer.drain()
        writer.transport.abort()


@dataclass
class Store:
    """Where the jobs are, and the handles the faults need."""

    backend: str
    data_dir: Path
    url: str | None  # JOBS_DATABASE_URL for the servers
    disk: Path | None = None  # a small tmpfs under the store's files (root only)
    postgres: Any = None  # tests.pg_server.PostgresServer
    postgres_db: str = ""
    proxy: Proxy | None = None

    def settings(self) -> StoreSettings:
        """For the checker: the store itself, not through the proxy."""
        url = self.url
        if self.postgres is not None:
            url = self.postgres.url(self.postgres_db)
        return StoreSettings(self.data_dir, database_url=url, lease_seconds=LEASE_SECONDS)


@contextlib.asynccontextmanager
async def open_backend(backend: str, root: Path) -> AsyncIterator[Store]:
    data_dir = root / "data"
    data_dir.mkdir()
    if backend == "postgresql":
        from tests.pg_server import PostgresServer

        server = PostgresServer()
        server.start()
        proxy = Proxy(server.port)
        await proxy.start()
        try:
            name = server.create_database()
            url = server.url(name).replace(f":{server.port}/", f":{proxy.port}/")
            store = Store(backend, data_dir, url, postgres=server, proxy=proxy, postgres_db=name)
            yield store
        finally:
            await proxy.close()
            server.cleanup()
        return
    disk = _small_disk(data_dir)
    try:
        url = f"sqlite:///{data_dir / 'jobs.db'}" if backend == "sqlite" else None
        yield Store(backend, data_dir, url, disk=disk)
    finally:
        if disk is not None:  # the store's files outlive the tmpfs, for a look after a breach
            shutil.copytree(data_dir, root / "store", ignore=shutil.ignore_patterns("ballast"))
            _unmount(disk)


def _small_disk(where: Path) -> Path | None:
    """A 64 MiB tmpfs at `where`, to fill up; None where mounting is not allowed."""
    if os.geteuid() != 0 or sys.platform != "linux":
        return None
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(where)], capture_output=True
    )
    return where if mounted.returncode == 0 else None


def _unmount(disk: Path) -> None:
    subprocess.run(["umount", "-l", str(disk)], check=False)


def fill(disk: Path) -> Path:
    """Write a ballast file until the disk is full; returns it (remove it to free the disk)."""
    ballast = disk / "ballast"
    with open(ballast, "wb", buffering=0) as file:
        chunk = b"\0" * 65536
        while chunk:
            try:
                file.write(chunk)
            except OSError:
                chunk = chunk[: len(chunk) // 2]
    return ballast
