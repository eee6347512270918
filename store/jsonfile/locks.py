"""OS file locks (`fcntl.flock`) and server-instance liveness.

Every process that shares a data directory takes `jobs.json.lock` for each
read-merge-write of the jobs file, and holds an exclusive lock on its own
`instances/<id>.lock` for as long as it lives. The kernel drops that lock when the
process dies, however it dies, so "can I take it?" answers "is that instance gone?".
These functions block; call them from a worker thread.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import re
from collections.abc import Iterator
from pathlib import Path

log = logging.getLogger(__name__)

_INSTANCE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")
_OPEN_FLAGS = os.O_RDWR | os.O_CLOEXEC


def is_valid_instance_id(instance_id: str) -> bool:
    """True if `instance_id` is safe to use as a file name (it names the instance's lock)."""
    return _INSTANCE_ID.fullmatch(instance_id) is not None


@contextlib.contextmanager
def flocked(path: Path, *, exclusive: bool) -> Iterator[None]:
    """Hold a shared or exclusive `flock` on `path` (created 0600 if missing).

    Each call opens its own descriptor: flock locks belong to the open file description,
    so two threads of one process exclude each other just as two processes do.
    """
    fd = os.open(path, _OPEN_FLAGS | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        yield
    finally:
        os.close(fd)  # closing releases the lock


class InstanceLock:
    """The lock that marks one server instance as alive while its process lives."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock; `BlockingIOError` if a live instance already uses this id."""
        while True:
            fd = os.open(self.path, _OPEN_FLAGS | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                if _same_file(fd, self.path):
                    break
            except BaseException:
                os.close(fd)
                raise
            # A sweeper took this file for a dead instance's and removed it before we
            # locked it: a lock on a removed file proves nothing, so start again.
            os.close(fd)
        try:
            os.fchmod(fd, 0o600)
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())  # for people, not for the protocol
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd

    def release(self) -> None:
        """Remove the file and drop the lock; safe to call twice."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            # Unlink while still locked, so nobody can take over a file that is going away.
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path)
        finally:
            os.close(fd)


def _same_file(fd: int, path: Path) -> bool:
    try:
        return os.stat(path).st_ino == os.fstat(fd).st_ino
    except FileNotFoundError:
        return False


def owner_alive(instances_dir: Path, owner: str) -> bool:
    """True while the instance `owner` holds its lock; cleans up the file of a dead one."""
    if not is_valid_instance_id(owner):
        return False  # not one of ours (or a hostile path): nobody can be holding it
    path = instances_dir / f"{owner}.lock"
    try:
        fd = os.open(path, _OPEN_FLAGS)
    except FileNotFoundError:
        return False
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                return True
            raise
        # We got the lock, so its owner is gone; remove the file while we hold it (unless
        # it is already a new file of a new instance under the same id).
        if _same_file(fd, path):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
        log.debug("instance %s is gone; removed %s", owner, path)
        return False
    finally:
        os.close(fd)


def sweep_dead_instances(instances_dir: Path) -> list[str]:
    """Remove the lock files of instances that died without cleaning up; returns their ids."""
    gone = []
    for path in instances_dir.glob("*.lock"):
        owner = path.name.removesuffix(".lock")
        if is_valid_instance_id(owner) and not owner_alive(instances_dir, owner):
            gone.append(owner)
    return gone
