"""OS file locks and server-instance liveness, on Linux, macOS and Windows.

Every process that shares a data directory takes `jobs.json.lock` for each
read-merge-write of the jobs file (shared to read, exclusive to write), and holds an
exclusive lock on its own `instances/<id>.lock` for as long as it lives. The OS drops that
lock when the process dies, however it dies, so "can I take it?" answers "is that instance
gone?". These functions block; call them from a worker thread.

One primitive sits under all of it: lock an open descriptor, shared or exclusive, waiting
or not. Linux uses `fcntl.flock` directly; every other OS goes through portalocker
(`flock` on macOS and the BSDs, `LockFileEx` on Windows). Both lock per open file, so two
descriptors of one process exclude each other just as two processes do. `POW_PORTABLE=1`
selects the portalocker path on Linux too, so the code that macOS and Windows run is
tested here.

What differs on Windows is handled here without a platform switch: an open file cannot be
removed there (so a lock file is removed after its descriptor is closed, which is safe on
Windows for that very reason), files are opened in binary mode, and `fchmod` does not
exist (modes are POSIX only).
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

import portalocker

log = logging.getLogger(__name__)

_INSTANCE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")
# os.open makes descriptors non-inheritable on every OS (PEP 446); O_BINARY exists on
# Windows only, where without it the C runtime would translate line ends.
_OPEN_FLAGS = os.O_RDWR | getattr(os, "O_BINARY", 0)
_TRUE = {"1", "true", "yes", "on"}


def portable_requested() -> bool:
    """True when `POW_PORTABLE` asks for the code of other OSes on Linux."""
    return os.environ.get("POW_PORTABLE", "").strip().lower() in _TRUE


class FileLocker(Protocol):
    """Locks on open descriptors, held per open file and dropped by the OS at exit."""

    name: str

    def lock(self, fd: int, *, exclusive: bool, wait: bool) -> bool:
        """Take the lock; without `wait`, False at once if another holder has it."""
        ...

    def unlock(self, fd: int) -> None: ...


class PortaLocker:
    """portalocker: `flock` on POSIX systems, `LockFileEx` on Windows."""

    name = "portalocker"

    def __init__(self) -> None:
        if sys.platform == "win32":
            from portalocker.portalocker import Win32Locker

            # LockFileEx for both kinds: the msvcrt lock portalocker takes for exclusive
            # locks by default retries once a second and gives up after ten.
            win32 = Win32Locker()
            self._lock, self._unlock = win32.lock, win32.unlock
        else:
            self._lock, self._unlock = portalocker.lock, portalocker.unlock

    def lock(self, fd: int, *, exclusive: bool, wait: bool) -> bool:
        flags = portalocker.LockFlags.EXCLUSIVE if exclusive else portalocker.LockFlags.SHARED
        if not wait:
            flags |= portalocker.LockFlags.NON_BLOCKING
        while True:
            try:
                self._lock(fd, flags)
                return True
            except portalocker.AlreadyLocked:
                if not wait:
                    return False
                # A waiting lock reports contention only if the OS gave up waiting: go on.
            except portalocker.LockException as exc:
                raise _os_error(exc) from None

    def unlock(self, fd: int) -> None:
        try:
            self._unlock(fd)
        except portalocker.LockException as exc:
            raise _os_error(exc) from None


def _os_error(exc: portalocker.LockException) -> OSError:
    """The OSError under portalocker's exception, as the native path would raise it."""
    cause = exc.__cause__
    return cause if isinstance(cause, OSError) else OSError(str(exc))


if sys.platform == "linux":
    import fcntl

    class FlockLocker:
        """`fcntl.flock` itself: Linux's native path."""

        name = "flock"

        def lock(self, fd: int, *, exclusive: bool, wait: bool) -> bool:
            operation = fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH
            try:
                fcntl.flock(fd, operation if wait else operation | fcntl.LOCK_NB)
            except BlockingIOError:
                return False
            return True

        def unlock(self, fd: int) -> None:
            fcntl.flock(fd, fcntl.LOCK_UN)

    def make_locker(portable: bool) -> FileLocker:
        """The locker this OS uses; with `portable`, the one other OSes use."""
        return PortaLocker() if portable else FlockLocker()

else:

    def make_locker(portable: bool) -> FileLocker:
        """The locker this OS uses (`portable` changes nothing off Linux)."""
        return PortaLocker()


locker: FileLocker = make_locker(portable_requested())


def is_valid_instance_id(instance_id: str) -> bool:
    """True if `instance_id` is safe to use as a file name (it names the instance's lock)."""
    return _INSTANCE_ID.fullmatch(instance_id) is not None


@contextlib.contextmanager
def flocked(path: Path, *, exclusive: bool) -> Iterator[None]:
    """Hold a shared or exclusive lock on `path` (created 0600 if missing).

    Each call opens its own descriptor: the lock belongs to that open file, so two
    threads of one process exclude each other just as two processes do.
    """
    fd = os.open(path, _OPEN_FLAGS | os.O_CREAT, 0o600)
    try:
        locker.lock(fd, exclusive=exclusive, wait=True)
        yield
    finally:
        _close(fd)


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
                if not locker.lock(fd, exclusive=True, wait=False):
                    raise BlockingIOError(
                        errno.EWOULDBLOCK, "locked by a live instance", str(self.path)
                    )
                if _same_file(fd, self.path):
                    break
            except BaseException:
                _close(fd)
                raise
            # A sweeper took this file for a dead instance's and removed it before we
            # locked it: a lock on a removed file proves nothing, so start again.
            _close(fd)
        try:
            if sys.platform != "win32":
                os.fchmod(fd, 0o600)  # the umask may have taken bits off
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())  # for people, not for the protocol
        except BaseException:
            _close(fd)
            raise
        self._fd = fd

    def release(self) -> None:
        """Remove the file and drop the lock; safe to call twice."""
        fd, self._fd = self._fd, None
        if fd is not None:
            _remove_and_close(fd, self.path)


def _close(fd: int) -> None:
    """Unlock and close (closing alone frees the lock, at once on POSIX; Windows asks for
    an explicit unlock)."""
    try:
        with contextlib.suppress(OSError):
            locker.unlock(fd)
    finally:
        os.close(fd)


def _remove_and_close(fd: int, path: Path) -> None:
    """Remove the lock file `fd` holds locked, then drop the lock.

    Removed while still locked, so that nobody can take over a file that is going away.
    Windows cannot remove an open file: there it goes after the close, and if another
    process opened it in between, the removal fails again and the file stays theirs.
    """
    try:
        try:
            os.unlink(path)
            removed = True
        except FileNotFoundError:
            removed = True
        except PermissionError:
            removed = False
    finally:
        _close(fd)
    if not removed:
        with contextlib.suppress(FileNotFoundError, PermissionError):
            os.unlink(path)


def _same_file(fd: int, path: Path) -> bool:
    try:
        return os.path.samestat(os.stat(path), os.fstat(fd))
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
        taken = locker.lock(fd, exclusive=True, wait=False)
    except BaseException:
        os.close(fd)
        raise
    if not taken:
        os.close(fd)  # it holds no lock of ours
        return True
    # We got the lock, so its owner is gone; remove the file while we hold it (unless it
    # is already a new file of a new instance under the same id).
    if _same_file(fd, path):
        _remove_and_close(fd, path)
    else:
        _close(fd)
    log.debug("instance %s is gone; removed %s", owner, path)
    return False


def sweep_dead_instances(instances_dir: Path) -> list[str]:
    """Remove the lock files of instances that died without cleaning up; returns their ids."""
    gone = []
    for path in instances_dir.glob("*.lock"):
        owner = path.name.removesuffix(".lock")
        if is_valid_instance_id(owner) and not owner_alive(instances_dir, owner):
            gone.append(owner)
    return gone
