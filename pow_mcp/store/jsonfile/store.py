"""The JSON file store: `$JOBS_DATA_DIR/jobs.json`, written atomically, shared by processes.

Every operation is one step of a write: under an exclusive lock on `jobs.json.lock`,
re-read the file if another process replaced it, apply the operations waiting for this
write to that fresh content (so their conditions are checked against what is really
stored), write a temp file, fsync, keep the old file as `jobs.json.bak`, rename, fsync the
directory. Operations that arrive while a write runs share the next one (group commit).
A failed write fails every operation in it and leaves no trace of them.

Several processes may share the directory. Each holds an exclusive lock on its own
`instances/<id>.lock` while it lives; the OS drops it when the process dies, however
it dies, which is how `orphans` tells a gone owner. Readers re-read the file (under a
shared lock) when its (mtime, size, inode) changed; `wait_for_change` watches for that.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import anyio

from pow_mcp.store.api import (
    DataDirError,
    JobExistsError,
    JobStore,
    StoreClosedError,
    StoreError,
    StoreWriteError,
)
from pow_mcp.store.jsonfile import damage
from pow_mcp.store.jsonfile.codec import Contents, Entry, encode_line
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
    is_valid_instance_id,
    owner_alive,
    sweep_dead_instances,
)
from pow_mcp.store.query import Expiry, JobQuery, runnable_order
from pow_mcp.store.record import ACTIVE, JobRecord, JobStatus
from pow_mcp.store.transitions import Change, Condition, apply_change
from pow_mcp.store.writer import GroupCommit

log = logging.getLogger(__name__)

JOBS_FILE = "jobs.json"
WATCH_SECONDS = 0.1  # how often the file is checked for other processes' writes


class _Working:
    """The content one write builds: the file's content plus this batch's operations."""

    def __init__(self, base: Contents) -> None:
        self.base = base
        self.lines: dict[str, str] | None = None  # copied on the first change
        self.entries: dict[str, Entry] | None = None

    def get(self, job_id: str) -> JobRecord | None:
        if self.lines is None:
            return self.base.record(job_id)
        return Contents(self.lines, {}).record(job_id)

    def has(self, job_id: str) -> bool:
        return job_id in (self.lines if self.lines is not None else self.base.lines)

    def current_entries(self) -> dict[str, Entry]:
        return self.entries if self.entries is not None else self.base.entries

    def _mutable(self) -> tuple[dict[str, str], dict[str, Entry]]:
        if self.lines is None or self.entries is None:
            self.lines, self.entries = dict(self.base.lines), dict(self.base.entries)
        return self.lines, self.entries

    def put(self, record: JobRecord) -> None:
        lines, entries = self._mutable()
        lines[record.job_id] = encode_line(record.job_id, record)
        entries[record.job_id] = Entry.of(record)

    def delete(self, job_id: str) -> None:
        lines, entries = self._mutable()
        del lines[job_id], entries[job_id]

    @property
    def changed(self) -> bool:
        return self.lines is not None

    def freeze(self) -> Contents:
        if self.lines is None or self.entries is None:
            return self.base
        return Contents(self.lines, self.entries)


_Op = Callable[[_Working], Any]  # runs in the write thread; returns its result or raises


@dataclass(frozen=True)
class _Written:
    results: list[Any]
    contents: Contents
    sig: FileSig | None


class JsonFileJobStore(JobStore):
    """Jobs in `data_dir/jobs.json`. Create with `await JsonFileJobStore.open(...)`."""

    kind = "json"

    def __init__(self, data_dir: Path, instance_id: str) -> None:
        if not is_valid_instance_id(instance_id):
            raise ValueError(f"invalid instance id {instance_id!r}")
        super().__init__(instance_id)
        self._dir = Path(data_dir).absolute()
        self.path = self._dir / JOBS_FILE
        self._backup = self._dir / f"{JOBS_FILE}.bak"
        self._lock_path = self._dir / f"{JOBS_FILE}.lock"
        self._instances = self._dir / "instances"
        self._instance_lock = InstanceLock(self._instances / f"{instance_id}.lock")
        self._contents = Contents()
        self._sig: FileSig | None = None
        self._epoch = 0  # bumped when a write is adopted: an older re-read is dropped
        self._commit: GroupCommit[_Op] = GroupCommit(self._run_batch)
        self._refreshing: anyio.Event | None = None
        self._changed = anyio.Event()
        self._state = "new"

    @classmethod
    async def open(cls, data_dir: Path, instance_id: str) -> JsonFileJobStore:
        """Open the store, recovering a damaged file; `DataDirError` if the directory cannot
        be created, read or written."""
        self = cls(data_dir, instance_id)
        with anyio.CancelScope(shield=True):  # never strand a store holding its locks
            loaded = await anyio.to_thread.run_sync(self._sync_open)
        self._contents, self._sig = loaded.contents, loaded.sig
        self._state = "open"
        log.info(
            "job store %s opened as instance %s with %d jobs",
            self.path,
            self.instance_id,
            len(self._contents.entries),
        )
        return self

    @property
    def location(self) -> str:
        return str(self.path)

    # -- life --------------------------------------------------------------------------------

    async def run_background(self) -> None:
        while True:
            await anyio.sleep(WATCH_SECONDS)
            if self._state != "open":
                return
            current = await anyio.to_thread.run_sync(stat_sig, self.path)
            if current != self._sig:
                await self._refresh()
                self._signal_change()

    async def wait_for_change(self) -> None:
        await self._changed.wait()

    async def close(self) -> None:
        if self._state != "open":
            return
        self._state = "closed"
        self._signal_change()
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(self._instance_lock.release)

    # -- queries -----------------------------------------------------------------------------

    async def get(self, job_id: str) -> JobRecord | None:
        await self._refresh()
        return self._contents.record(job_id)

    async def get_many(self, job_ids: Sequence[str]) -> dict[str, JobRecord]:
        await self._refresh()
        return self._records(i for i in dict.fromkeys(job_ids) if i in self._contents.entries)

    async def find(self, query: JobQuery) -> tuple[list[JobRecord], int]:
        await self._refresh()
        matching = [e for e in self._contents.entries.values() if query.matches(e)]
        matching.sort(key=query.sort_key, reverse=query.descending)
        chosen = [e.job_id for e in matching[query.offset : query.offset + query.limit]]
        records = self._records(chosen)
        return [records[job_id] for job_id in chosen if job_id in records], len(matching)

    async def runnable(self, owner: str, now: datetime, limit: int) -> list[JobRecord]:
        await self._refresh()
        found = [
            e
            for e in self._contents.entries.values()
            if e.status is JobStatus.QUEUED
            and e.owner == owner
            and not e.blocked
            and (e.run_after is None or e.run_after <= now)
        ]
        found.sort(key=runnable_order)
        return list(self._records(e.job_id for e in found[:limit]).values())

    async def owned(self, owner: str, statuses: frozenset[JobStatus]) -> list[JobRecord]:
        await self._refresh()
        ids = (
            job_id
            for job_id, e in self._contents.entries.items()
            if e.owner == owner and e.status in statuses
        )
        return list(self._records(ids).values())

    async def count(self, statuses: frozenset[JobStatus], principal: str | None = None) -> int:
        await self._refresh()
        return sum(
            1
            for e in self._contents.entries.values()
            if e.status in statuses and (principal is None or e.principal == principal)
        )

    async def status_counts(self) -> dict[JobStatus, int]:
        await self._refresh()
        counts = dict.fromkeys(JobStatus, 0)
        for entry in self._contents.entries.values():
            counts[entry.status] += 1
        return counts

    async def orphans(self) -> list[JobRecord]:
        await self._refresh()
        candidates = {
            job_id: e.owner
            for job_id, e in self._contents.entries.items()
            if e.status in ACTIVE and e.owner != self.instance_id
        }
        owners = {owner for owner in candidates.values() if owner is not None}
        alive = await anyio.to_thread.run_sync(self._alive_owners, owners)
        gone = (job_id for job_id, owner in candidates.items() if owner not in alive)
        return list(self._records(gone).values())

    def _alive_owners(self, owners: Iterable[str]) -> set[str]:
        return {owner for owner in owners if owner_alive(self._instances, owner)}

    def _records(self, job_ids: Iterable[str]) -> dict[str, JobRecord]:
        found = {}
        for job_id in job_ids:
            record = self._contents.record(job_id)
            if record is not None:
                found[job_id] = record
        return found

    # -- the primitives: each an operation of the next write ----------------------------------

    async def _insert(self, records: Sequence[JobRecord]) -> None:
        def insert(work: _Working) -> None:
            taken = [r.job_id for r in records if work.has(r.job_id)]
            if taken:
                raise JobExistsError(f"job {taken[0]} already exists")
            for record in records:
                work.put(record)

        await self._submit(insert)

    async def _change(
        self, job_id: str, when: Condition, change: Change, now: datetime
    ) -> tuple[bool, JobRecord | None]:
        result: tuple[bool, JobRecord | None] = await self._submit(
            lambda work: _change_in(work, job_id, when, change, now)
        )
        return result

    async def _change_many(
        self, items: Sequence[tuple[str, Condition, Change]], now: datetime
    ) -> list[bool]:
        result: list[bool] = await self._submit(
            lambda work: [_change_in(work, *item, now)[0] for item in items]
        )
        return result

    async def _delete_finished(self, expiry: Expiry) -> list[str]:
        def delete(work: _Working) -> list[str]:
            doomed = [e.job_id for e in work.current_entries().values() if expiry.covers(e)]
            for job_id in doomed:
                work.delete(job_id)
            return doomed

        result: list[str] = await self._submit(delete)
        return result

    async def _delete_all(self) -> int:
        def delete(work: _Working) -> int:
            doomed = list(work.current_entries())  # a newer version's records stay
            for job_id in doomed:
                work.delete(job_id)
            return len(doomed)

        result: int = await self._submit(delete)
        return result

    async def _submit(self, op: _Op) -> Any:
        if self._state != "open":
            raise StoreClosedError("the job store is closed")
        return await self._commit.submit(op)

    async def _run_batch(self, ops: list[_Op]) -> list[Any]:
        epoch = self._epoch
        try:
            written = await anyio.to_thread.run_sync(
                self._sync_write, ops, self._contents, self._sig
            )
        except Exception as exc:
            self._sig = None  # the file may or may not have changed: re-read it next time
            error = StoreWriteError(f"could not write {self.path}: {exc}")
            error.__cause__ = exc
            log.error("%s; %d operations failed and changed nothing", error, len(ops))
            return [error] * len(ops)
        if self._epoch == epoch or written.sig is not None:
            self._adopt(written.contents, written.sig)
        return written.results

    def _adopt(self, contents: Contents, sig: FileSig | None) -> None:
        self._contents, self._sig = contents, sig
        self._epoch += 1

    def _signal_change(self) -> None:
        self._changed.set()
        self._changed = anyio.Event()

    # -- seeing other processes' writes -------------------------------------------------------

    async def _refresh(self) -> None:
        """Re-read the file if another process replaced it since we last looked."""
        if self._state != "open":
            raise StoreClosedError("the job store is closed")
        if self._refreshing is not None:
            await self._refreshing.wait()
            return
        done = self._refreshing = anyio.Event()
        try:
            epoch = self._epoch
            try:
                result = await anyio.to_thread.run_sync(self._sync_peek, self._contents, self._sig)
            except OSError as exc:
                log.warning("could not re-read %s; showing the jobs last read: %s", self.path, exc)
                return
            if result is not None and result.repaired:
                try:
                    await self._submit(lambda work: None)  # the writer sets the damage aside
                except StoreError as exc:
                    log.warning("could not repair %s: %s", self.path, exc)
            elif result is not None and self._epoch == epoch:
                self._adopt(result.contents, result.sig)
        finally:
            self._refreshing = None
            done.set()

    # -- blocking work, run in a worker thread ------------------------------------------------

    def _sync_open(self) -> damage.Loaded:
        try:
            ensure_dir(self._dir)
            ensure_dir(self._instances)
            ensure_private_file(self._lock_path)
        except OSError as exc:
            raise self._dir_error(exc) from exc
        try:
            with flocked(self._lock_path, exclusive=True):
                # Under the write lock, which sweepers hold too: none of them can be
                # probing (so briefly locking) our new lock file while we take it.
                try:
                    self._instance_lock.acquire()
                except BlockingIOError:
                    raise StoreError(
                        f"instance id {self.instance_id!r} is in use by a live process on "
                        f"{self._dir}"
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
            self._instance_lock.release()
            if isinstance(exc, OSError):
                raise self._dir_error(exc) from exc
            raise

    def _dir_error(self, exc: OSError) -> DataDirError:
        reason = exc.strerror or str(exc)
        where = exc.filename or self._dir
        return DataDirError(
            f"cannot use the jobs data directory {self._dir} ({where}: {reason}). "
            "Set JOBS_DATA_DIR to a writable directory, or PERSIST_JOBS=false to keep "
            "jobs in memory only."
        )

    def _sync_peek(self, known: Contents, sig: FileSig | None) -> damage.Loaded | None:
        current = stat_sig(self.path)
        if current is None or current == sig:
            return None  # unchanged (the common case) costs one stat and no lock
        with flocked(self._lock_path, exclusive=False):
            return damage.peek(self.path, known, sig)

    def _sync_write(self, ops: list[_Op], known: Contents, sig: FileSig | None) -> _Written:
        with flocked(self._lock_path, exclusive=True):
            loaded = damage.load(self.path, self._backup, known, sig)
            work = _Working(loaded.contents)
            results: list[Any] = []
            for op in ops:
                try:
                    results.append(op(work))
                except (StoreError, ValueError) as exc:  # this op's own refusal
                    results.append(exc)
            if not (work.changed or loaded.repaired):
                return _Written(results, loaded.contents, loaded.sig)
            contents = work.freeze()
            backup = self._backup if loaded.can_backup else None
            new_sig = write_atomic(self.path, contents.render(), backup=backup)
            return _Written(results, contents, new_sig)


def _change_in(
    work: _Working, job_id: str, when: Condition, change: Change, now: datetime
) -> tuple[bool, JobRecord | None]:
    stored = work.get(job_id)
    if stored is None:
        return False, None
    if not when.holds(stored):
        return False, stored
    new = apply_change(stored, change, now)
    work.put(new)
    return True, new


__all__ = ["JOBS_FILE", "JsonFileJobStore"]
