"""Real processes forked from one that has imported what they run (multiprocessing's
forkserver), for tests that start many: a `pow-mcp` server spends about 0.9 s of CPU importing
the MCP SDK before it serves, a store child a third of a second importing the store.

One forkserver per test process: its preload list is global, so every user's modules are
named here, before the first fork starts it.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import subprocess
from dataclasses import dataclass
from multiprocessing.process import BaseProcess
from typing import IO

FORKS = multiprocessing.get_context("forkserver")
FORKS.set_forkserver_preload(
    [
        "tests.store_child",
        "tests.server_fork",
        "pow_mcp.store.sql.store",
        "sqlalchemy.dialects.sqlite.pysqlite",
        "sqlalchemy.dialects.postgresql.psycopg",
    ]
)


@dataclass
class Forked:
    """A forked process, with the part of subprocess.Popen the tests use."""

    process: BaseProcess
    stdout: IO[bytes] | None = None
    stderr: IO[str] | None = None

    @property
    def pid(self) -> int:
        assert self.process.pid is not None
        return self.process.pid

    @property
    def returncode(self) -> int | None:
        return self.process.exitcode

    def poll(self) -> int | None:
        return self.process.exitcode

    def send_signal(self, sig: int) -> None:
        if self.process.exitcode is None:
            os.kill(self.pid, sig)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def wait(self, timeout: float | None = None) -> int:
        self.process.join(timeout)
        if self.process.exitcode is None:
            raise subprocess.TimeoutExpired(str(self.process.name), timeout or 0)
        return self.process.exitcode
