"""The jobs data directory on disk: where each of its files is, and the blocking steps on
them (open, re-read, write) under `jobs.json.lock`; the store runs them in a worker thread."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pow_mcp.store.api import DataDirError, StoreError
from pow_mcp.store.jsonfile import damage
from pow_mcp.store.jsonfile.codec import Contents
from pow_mcp.store.jsonfile.file import (
    FileSig,
    ensure_dir,
    ensure_private_file,
    remove_stale_temps,
    stat_sig,
    write_atomic,
)
from pow_mcp.store.jsonfile.locks import (
    InstanceLock,
    flocked,
    owner_alive,
    sweep_dead_instances,
)
from pow_mcp.store.jsonfile.working import Op, Working

log = logging.getLogger(__name__)

JOBS_FILE = "jobs.json"


@dataclass(frozen=True)
class Written:
    """What one write gave: each operation's result, the content now and its file's sig."""

    results: list[Any]
    contents: Contents
    sig: FileSig | None


class DataDir:
    """`data_dir`'s jobs file, its backup and lock, and the instances' lock files."""

    def __init__(self, data_dir: Path, instance_id: str) -> None:
        self.instance_id = instance_id
        self.root = Path(data_dir).absolute()
        self.path = self.root / JOBS_FILE
        self._backup = self.root / f"{JOBS_FILE}.bak"
        self._lock_path = self.root / f"{JOBS_FILE}.lock"
        self._instances = self.root / "instances"
        self.instance_lock = InstanceLock(self._instances / f"{instance_id}.lock")

    def open(self) -> damage.Loaded:
        """Take this instance's lock, tidy up after dead ones and load the file, repairing
        it; `DataDirError` if the directory cannot be created, read or written."""
        try:
            ensure_dir(self.root)
            ensure_dir(self._instances)
            ensure_private_file(self._lock_path)
        except OSError as exc:
            raise self._dir_error(exc) from exc
        try:
            with flocked(self._lock_path, exclusive=True):
                # Under the write lock, which sweepers hold too: none of them can be
                # probing (so briefly locking) our new lock file while we take it.
                try:
                    self.instance_lock.acquire()
                except BlockingIOError:
                    raise StoreError(
                        f"instance id {self.instance_id!r} is in use by a live process on "
                        f"{self.root}"
                    ) from None
                for stale in remove_stale_temps(self.path):
                    log.info("removed %s, left by an interrupted write", stale)
                for owner in sweep_dead_instances(self._instances):
                    log.info("removed the lock file of instance %s, which is gone", owner)
                loaded = damage.load(self.path, self._backup, Contents(), None)
                if not loaded.repaired:
                    return loaded
                backup = self._backup if loaded.can_backup else None
                sig = write_atomic(self.path, loaded.contents.render(), backup=backup)
                return damage.Loaded(loaded.contents, sig, repaired=False, can_backup=True)
        except BaseException as exc:
            self.instance_lock.release()
            if isinstance(exc, OSError):
                raise self._dir_error(exc) from exc
            raise

    def _dir_error(self, exc: OSError) -> DataDirError:
        reason = exc.strerror or str(exc)
        where = exc.filename or self.root
        return DataDirError(
            f"cannot use the jobs data directory {self.root} ({where}: {reason}). "
            "Set JOBS_DATA_DIR to a writable directory, or PERSIST_JOBS=false to keep "
            "jobs in memory only."
        )

    def peek(self, known: Contents, sig: FileSig | None) -> damage.Loaded | None:
        """The file again if another process replaced it since `sig`, else None."""
        current = stat_sig(self.path)
        if current is None or current == sig:
            return None  # unchanged (the common case) costs one stat and no lock
        with flocked(self._lock_path, exclusive=False):
            return damage.peek(self.path, known, sig)

    def write(self, ops: list[Op], known: Contents, sig: FileSig | None) -> Written:
        """Apply `ops` to what the file holds now and write the result, if anything changed;
        an op's own refusal is its result."""
        with flocked(self._lock_path, exclusive=True):
            loaded = damage.load(self.path, self._backup, known, sig)
            work = Working(loaded.contents)
            results: list[Any] = []
            for op in ops:
                try:
                    results.append(op(work))
                except (StoreError, ValueError) as exc:  # this op's own refusal
                    results.append(exc)
            if not (work.changed or loaded.repaired):
                return Written(results, loaded.contents, loaded.sig)
            contents = work.freeze()
            backup = self._backup if loaded.can_backup else None
            new_sig = write_atomic(self.path, contents.render(), backup=backup)
            return Written(results, contents, new_sig)

    def alive_owners(self, owners: Iterable[str]) -> set[str]:
        return {owner for owner in owners if owner_alive(self._instances, owner)}
