"""Jobs in memory only (PERSIST_JOBS=false): the rules of every store, no durability."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import anyio

from pow_mcp.store.api import JobExistsError, JobStore, StoreClosedError
from pow_mcp.store.query import Expiry, JobQuery, is_runnable, page, runnable_order
from pow_mcp.store.record import ACTIVE, JobRecord, JobStatus, copy_record
from pow_mcp.store.transitions import Change, Condition, apply_change


def change_in(
    records: dict[str, JobRecord], job_id: str, when: Condition, change: Change, now: datetime
) -> tuple[bool, JobRecord | None]:
    """`JobStore._change` on a dict of records (shared with the JSON file store)."""
    stored = records.get(job_id)
    if stored is None:
        return False, None
    if not when.holds(stored):
        return False, stored
    new = records[job_id] = apply_change(stored, change, now)
    return True, new


class MemoryJobStore(JobStore):
    """A dict of records; nothing is written anywhere and nothing survives the process."""

    kind = "memory"

    def __init__(self, instance_id: str) -> None:
        super().__init__(instance_id)
        self._records: dict[str, JobRecord] = {}
        self._closed = False

    @property
    def location(self) -> str:
        return "memory (PERSIST_JOBS=false: nothing is written)"

    async def close(self) -> None:
        self._closed = True

    async def wait_for_change(self) -> None:
        await anyio.sleep_forever()  # no other process can see these jobs

    async def get(self, job_id: str) -> JobRecord | None:
        record = self._open().get(job_id)
        return None if record is None else copy_record(record)

    async def get_many(self, job_ids: Sequence[str]) -> dict[str, JobRecord]:
        records = self._open()
        return {i: copy_record(records[i]) for i in dict.fromkeys(job_ids) if i in records}

    async def find(self, query: JobQuery) -> tuple[list[JobRecord], int]:
        return page(self._open().values(), query)

    async def runnable(self, owner: str, now: datetime, limit: int) -> list[JobRecord]:
        found = [r for r in self._open().values() if is_runnable(r, owner, now)]
        found.sort(key=runnable_order)
        return [copy_record(r) for r in found[:limit]]

    async def owned(self, owner: str, statuses: frozenset[JobStatus]) -> list[JobRecord]:
        return [
            copy_record(r)
            for r in self._open().values()
            if r.owner == owner and r.status in statuses
        ]

    async def count(self, statuses: frozenset[JobStatus], principal: str | None = None) -> int:
        return sum(
            1
            for r in self._open().values()
            if r.status in statuses and (principal is None or r.principal == principal)
        )

    async def status_counts(self) -> dict[JobStatus, int]:
        counts = dict.fromkeys(JobStatus, 0)
        for record in self._open().values():
            counts[record.status] += 1
        return counts

    async def orphans(self) -> list[JobRecord]:
        # No other instance shares these jobs: any other owner is gone.
        return [
            copy_record(r)
            for r in self._open().values()
            if r.status in ACTIVE and r.owner != self.instance_id
        ]

    async def _insert(self, records: Sequence[JobRecord]) -> None:
        stored = self._open()
        taken = [r.job_id for r in records if r.job_id in stored]
        if taken:
            raise JobExistsError(f"job {taken[0]} already exists")
        for record in records:
            stored[record.job_id] = record

    async def _change(
        self, job_id: str, when: Condition, change: Change, now: datetime
    ) -> tuple[bool, JobRecord | None]:
        applied, record = change_in(self._open(), job_id, when, change, now)
        return applied, None if record is None else copy_record(record)

    async def _change_many(
        self, items: Sequence[tuple[str, Condition, Change]], now: datetime
    ) -> list[bool]:
        records = self._open()
        return [change_in(records, *item, now)[0] for item in items]

    async def _delete_finished(self, expiry: Expiry) -> list[str]:
        records = self._open()
        doomed = [job_id for job_id, r in records.items() if expiry.covers(r)]
        for job_id in doomed:
            del records[job_id]
        return doomed

    async def _delete_all(self) -> int:
        records = self._open()
        count = len(records)
        records.clear()
        return count

    def _open(self) -> dict[str, JobRecord]:
        if self._closed:
            raise StoreClosedError("the job store is closed")
        return self._records


__all__ = ["MemoryJobStore", "change_in"]
