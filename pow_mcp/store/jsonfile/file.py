"""Blocking file primitives for the jobs file: atomic replace, backups, set-aside copies.

Everything here blocks on the disk; the store calls it from a worker thread. Files are
created 0600 and directories 0700 whatever the umask, since job inputs may be private (on
POSIX systems: Windows has no such modes, the per-user directory's ACL is what protects).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import NamedTuple

TEMP_MARK = ".tmp-"  # `<name>.tmp-...` files are ours; a crash can leave them behind
# os.open makes descriptors non-inheritable on every OS (PEP 446); O_BINARY exists on
# Windows only, where without it the C runtime would translate line ends.
_BINARY = getattr(os, "O_BINARY", 0)


class FileSig(NamedTuple):
    """Enough of a stat to tell that a file was replaced or rewritten."""

    mtime_ns: int
    size: int
    inode: int

    @classmethod
    def of(cls, st: os.stat_result) -> FileSig:
        return cls(st.st_mtime_ns, st.st_size, st.st_ino)


def ensure_dir(path: Path) -> None:
    """Create `path` and any missing parents, each 0700."""
    missing: list[Path] = []
    probe = path
    while not probe.exists() and probe != probe.parent:
        missing.append(probe)
        probe = probe.parent
    for directory in reversed(missing):
        try:
            os.mkdir(directory, 0o700)
        except FileExistsError:
            continue  # another process made it first
        os.chmod(directory, 0o700)  # the umask may have taken bits off
        fsync_dir(directory.parent)  # a durable file needs a durable directory entry
    if not path.is_dir():
        raise NotADirectoryError(f"{path} is not a directory")


def ensure_private_file(path: Path) -> None:
    """Create `path` 0600 if it is missing (proving the directory is writable)."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | _BINARY, 0o600)
    os.close(fd)


def stat_sig(path: Path) -> FileSig | None:
    try:
        return FileSig.of(os.stat(path))
    except FileNotFoundError:
        return None


def read_file(path: Path) -> tuple[bytes, FileSig] | None:
    """The file's bytes and the signature of exactly that version; None if it is missing."""
    try:
        fd = os.open(path, os.O_RDONLY | _BINARY)
    except FileNotFoundError:
        return None
    with os.fdopen(fd, "rb") as file:
        sig = FileSig.of(os.fstat(file.fileno()))
        return file.read(), sig


def write_atomic(path: Path, data: bytes, *, backup: Path | None) -> FileSig:
    """Replace `path` with `data` so that any reader sees the old or the new file whole.

    The data is fsynced before the rename and the directory after it. With `backup`, the
    file being replaced becomes `backup` (a hard link: no copy, and always a complete
    file, because only complete files are ever renamed into place).
    """
    tmp = _temp_name(path)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _BINARY, 0o600)
    try:
        try:
            if sys.platform != "win32":
                os.fchmod(fd, 0o600)
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
            sig = FileSig.of(os.fstat(fd))
        finally:
            os.close(fd)
        if backup is not None:
            _link_over(path, backup)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    fsync_dir(path.parent)
    return sig


def set_aside(path: Path, label: str) -> Path:
    """Keep `path` as `<path>.<label>-<UTC timestamp>` without touching its content.

    A hard link, so `path` stays in place until an atomic replace supersedes it: a crash
    in between leaves the directory as it was. Never overwrites an existing file.
    """
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S.%fZ")
    for attempt in range(1000):
        suffix = f"-{attempt}" if attempt else ""
        target = path.with_name(f"{path.name}.{label}-{stamp}{suffix}")
        try:
            os.link(path, target)
        except FileExistsError:
            continue
        except OSError:
            if target.exists():
                continue
            _copy_private(path, target)  # a file system without hard links
        fsync_dir(path.parent)
        return target
    raise FileExistsError(f"no free name to set {path} aside")


def remove_stale_temps(path: Path) -> list[Path]:
    """Delete temporary files a crashed writer of `path` left; call under the write lock."""
    removed = []
    for stale in path.parent.glob(f"{path.name}{TEMP_MARK}*"):
        with contextlib.suppress(FileNotFoundError):
            stale.unlink()
            removed.append(stale)
    return removed


def fsync_dir(directory: Path) -> None:
    """Make a directory's entries durable (POSIX). Windows cannot open a directory as a
    file: there NTFS journals its metadata, and a rename is as durable as it gets."""
    if sys.platform != "win32":
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _temp_name(path: Path) -> Path:
    return path.with_name(f"{path.name}{TEMP_MARK}{os.getpid()}-{secrets.token_hex(6)}")


def _link_over(source: Path, target: Path) -> None:
    """Make `target` a complete copy of `source` in one rename; nothing if `source` is missing."""
    tmp = _temp_name(source)
    try:
        os.link(source, tmp)
    except FileNotFoundError:
        return
    except OSError:
        _copy_private(source, tmp)
    try:
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _copy_private(source: Path, target: Path) -> None:
    with open(source, "rb") as src:
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _BINARY, 0o600)
        with os.fdopen(fd, "wb") as dst:
            shutil.copyfileobj(src, dst)
            dst.flush()
            os.fsync(dst.fileno())
