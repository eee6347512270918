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

import contextlib
import logging
from collections.abc import Iterable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import anyio

from pow_mcp.store.api import (
    JobExistsError,
    JobStore,
    StoreClosedError,
    StoreError,
    StoreWriteError,
)
from pow_mcp.store.jsonfile.codec import Contents
from pow_mcp.store.jsonfile.datadir import DataDir
from pow_mcp.store.jsonfile.file import FileSig, stat_sig
from pow_mcp.store.jsonfile.locks import is_valid_instance_id
from pow_mcp.store.jsonfile.working import Op, Working, change_in
from pow_mcp.store.query import Expiry, JobQuery, runnable_order
from pow_mcp.store.record import ACTIVE, JobRecord, JobStatus
from pow_mcp.store.transitions import Change, Condition
from pow_mcp.store.writer import GroupCommit

log = logging.getLogger(__name__)

WATCH_SECONDS = 0.1  # how often the file is checked for other processes' writes


class JsonFileJobStore(JobStore):
    """Jobs in `data_dir/jobs.json`. Create with `await JsonFileJobStore.open(...)`."""

    kind = "json"

    def __init__(self, data_dir: Path, instance_id: str) -> None:
        if not is_valid_instance_id(instance_id):
            raise ValueError(f"invalid instance id {instance_id!r}")
        super().__init__(instance_id)
        self._files = DataDir(data_dir, instance_id)
        self.path = self._files.path
        self._contents = Contents()
        self._sig: FileSig | None = None
        self._epoch = 0  # bumped when a write is adopted: an older re-read is dropped
        self._commit: GroupCommit[Op] = GroupCommit(self._run_batch)
        self._refreshing: anyio.Event | None = None
        self._changed = anyio.Event()
        self._state = "new"

    @classmethod
    async def open(cls, data_dir: Path, instance_id: str) -> JsonFileJobStore:
        """Open the store, recovering a damaged file; `DataDirError` if the directory cannot
        be created, read or written."""
        self = cls(data_dir, instance_id)
        with anyio.CancelScope(shield=True):  # never strand a store holding its locks
            loaded = await anyio.to_thread.run_sync(self._files.open)
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
            await anyio.to_thread.run_sync(self._files.instance_lock.release)

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
        alive = await anyio.to_thread.run_sync(self._files.alive_owners, owners)
        gone = (job_id for job_id, owner in candidates.items() if owner not in alive)
        return list(self._records(gone).values())

    def _records(self, job_ids: Iterable[str]) -> dict[str, JobRecord]:
        found = {}
        for job_id in job_ids:
            record = self._contents.record(job_id)
            if record is not None:
                found[job_id] = record
        return found

    # -- the primitives: each an operation of the next write ----------------------------------

    async def _insert(self, records: Sequence[JobRecord]) -> None:
        def insert(work: Working) -> None:
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
            lambda work: change_in(work, job_id, when, change, now)
        )
        return result

    async def _change_many(
        self, items: Sequence[tuple[str, Condition, Change]], now: datetime
    ) -> list[bool]:
        result: list[bool] = await self._submit(
            lambda work: [change_in(work, *item, now)[0] for item in items]
        )
        return result

    async def _delete_finished(self, expiry: Expiry) -> list[str]:
        def delete(work: Working) -> list[str]:
            doomed = [e.job_id for e in work.current_entries().values() if expiry.covers(e)]
            for job_id in doomed:
                work.delete(job_id)
            return doomed

        result: list[str] = await self._submit(delete)
        return result

    async def _delete_all(self) -> int:
        def delete(work: Working) -> int:
            doomed = list(work.current_entries())  # a newer version's records stay
            for job_id in doomed:
                work.delete(job_id)
            return len(doomed)

        result: int = await self._submit(delete)
        return result

    async def _submit(self, op: Op) -> Any:
        if self._state != "open":
            raise StoreClosedError("the job store is closed")
        return await self._commit.submit(op)

    async def _run_batch(self, ops: list[Op]) -> list[Any]:
        epoch = self._epoch
        try:
            written = await anyio.to_thread.run_sync(
                self._files.write, ops, self._contents, self._sig
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
        # Unchanged is the common case and one stat of a local file tells it: on the loop,
        # since a hop to a thread costs many times the stat and looks come many a second.
        with contextlib.suppress(OSError):  # the full look below reports it
            if stat_sig(self.path) == self._sig:
                return
        if self._refreshing is not None:
            await self._refreshing.wait()
            return
        done = self._refreshing = anyio.Event()
        try:
            epoch = self._epoch
            try:
                result = await anyio.to_thread.run_sync(self._files.peek, self._contents, self._sig)
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


__all__ = ["JsonFileJobStore"]
