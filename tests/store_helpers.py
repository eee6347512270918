"""Shared helpers for the store tests: records, the raw file, its lock, child processes."""

from __future__ import annotations

import itertools
import json
import os
import select
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from pow_mcp.store import JobRecord, JobStatus, StoreSettings, utc_now
from pow_mcp.store.jsonfile.locks import flocked
from tests import store_child
from tests.forks import FORKS, Forked

CHILD = Path(__file__).with_name("store_child.py")
ROOT = CHILD.parent.parent
_ids = itertools.count()
BASE_TIME = datetime.fromisoformat("2026-01-01T00:00:00+00:00")


def make_record(
    status: JobStatus = JobStatus.QUEUED,
    *,
    job_id: str | None = None,
    created: datetime | None = None,
    **fields: Any,
) -> JobRecord:
    n = next(_ids)
    created = created or BASE_TIME + timedelta(seconds=n)
    fields.setdefault("job_data", {"prefix": f"test-{n}-", "difficulty": 4})
    return JobRecord(
        job_id=job_id or f"pow_{int(created.timestamp() * 1000)}_t{n:09d}",
        status=status,
        created_at=created,
        updated_at=created,
        **fields,
    )


def finished(
    record: JobRecord, status: JobStatus = JobStatus.COMPLETED, **fields: Any
) -> JobRecord:
    now = fields.pop("completed_at", None) or utc_now()
    return record.model_copy(
        update={"status": status, "completed_at": now, "updated_at": now, **fields}
    )


def raw_jobs(data_dir: Path) -> dict[str, Any]:
    """The jobs file as any JSON reader sees it."""
    loaded: dict[str, Any] = json.loads((data_dir / "jobs.json").read_text())
    return loaded


@contextmanager
def holding_write_lock(data_dir: Path) -> Iterator[None]:
    """Hold `jobs.json.lock` exclusively, as another process in mid-write would (with the
    store's own locks: flock, or portalocker under POW_PORTABLE=1)."""
    with flocked(data_dir / "jobs.json.lock", exclusive=True):
        yield


def aside(data_dir: Path, pattern: str = "jobs.json.corrupt-*") -> list[Path]:
    """Files the store set aside."""
    return sorted(data_dir.glob(pattern))


def _child_argv(mode: str, settings: StoreSettings, args: tuple[str, ...]) -> list[str]:
    """store_child.py's arguments for the store `settings` name."""
    return [mode, str(settings.data_dir), settings.database_url or "-", *args]


def _child_env(settings: StoreSettings) -> dict[str, str]:
    """What store_child.py reads from its environment beyond the test's."""
    return {"JOBS_LEASE_SECONDS": str(settings.lease_seconds)}


def spawn(mode: str, settings: StoreSettings, *args: str, stderr: Path) -> subprocess.Popen[bytes]:
    """A store_child.py process on the store `settings` name."""
    with open(stderr, "ab") as err:
        return subprocess.Popen(
            [sys.executable, str(CHILD), *_child_argv(mode, settings, args)],
            env={**os.environ, **_child_env(settings)},
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=err,
        )


def fork(mode: str, settings: StoreSettings, *args: str, stderr: Path) -> Forked:
    """What `spawn` starts, forked from a process that has imported the store and its
    drivers (tests/forks.py), for the tests that start a hundred (stdin: none)."""
    read, write = FORKS.Pipe(duplex=False)
    process = FORKS.Process(
        target=store_child.forked,
        args=(_child_argv(mode, settings, args), _child_env(settings), write, str(stderr)),
    )
    process.start()
    write.close()  # ours: with the child's the only one left, the pipe ends when it dies
    stdout = os.fdopen(os.dup(read.fileno()), "rb", buffering=0)
    read.close()
    return Forked(process, stdout=stdout)


class Lines:
    """A child's stdout as lines, read straight from the pipe (no hidden read-ahead)."""

    def __init__(self, proc: subprocess.Popen[bytes] | Forked) -> None:
        assert proc.stdout is not None
        self.fd = proc.stdout.fileno()
        self.lines: list[str] = []
        self._partial = b""
        self.eof = False

    def _read(self, timeout: float | None) -> bool:
        ready, _, _ = select.select([self.fd], [], [], timeout)
        if not ready:
            return False
        chunk = os.read(self.fd, 65536)
        if not chunk:
            self.eof = True
            return False
        *complete, self._partial = (self._partial + chunk).split(b"\n")
        self.lines += [line.decode() for line in complete]
        return True

    def wait_for(self, predicate: Callable[[list[str]], bool], timeout: float) -> bool:
        """Read until `predicate(lines)` holds; False if `timeout` passed or the pipe closed."""
        deadline = time.monotonic() + timeout
        while not predicate(self.lines):
            left = deadline - time.monotonic()
            if left <= 0 or self.eof or not self._read(left):
                return predicate(self.lines)
        return True

    def drain(self) -> None:
        """Read to end of file (call after the child exited)."""
        while not self.eof:
            self._read(None)

    def durable(self) -> list[tuple[str, JobStatus]]:
        return [
            (parts[1], JobStatus(parts[2]))
            for parts in (line.split() for line in self.lines)
            if parts[:1] == ["DURABLE"]
        ]
