"""The job store interface: named atomic operations, queries, liveness; and its errors.

Backends (memory, JSON file, SQLite, PostgreSQL) implement four primitives, each atomic:
`_insert` (all or nothing), `_change` and `_change_many` (conditional, see
`store.transitions`) and `_delete_finished`, plus the queries. The named operations
below are built from them once, so every backend enforces the same rules.

Every operation is durable when it returns, or raises `StoreWriteError` and left no trace.
Debouncing of progress is not the store's business: see `store.writer`.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Sequence
from datetime import UTC, datetime

from pow_mcp.store.outage import Outage
from pow_mcp.store.query import Expiry, JobQuery, retention_cutoff
from pow_mcp.store.record import (
    ACTIVE,
    ANY_INSTANCE,
    TERMINAL,
    UNFINISHED,
    JobRecord,
    JobStatus,
    copy_record,
    utc_now,
)
from pow_mcp.store.transitions import (
    ANY,
    CANCELLABLE,
    CLAIMABLE,
    PAUSABLE,
    REQUEUEABLE,
    RESUMABLE,
    Change,
    Condition,
    Owner,
)

log = logging.getLogger(__name__)


class StoreError(Exception):
    """Base of every error the store raises."""


class DataDirError(StoreError):
    """The data directory cannot be created, read or written."""


class StoreConfigError(StoreError):
    """The store's settings (JOBS_DATABASE_URL and friends) cannot work; says how to fix them."""


class StoreWriteError(StoreError):
    """A write failed: the operation did not happen, and nothing of it is stored."""


class JobExistsError(StoreError):
    pass


class JobNotFoundError(StoreError):
    pass


class StoreClosedError(StoreError):
    pass


class JobStore(ABC):
    """Where jobs live. Every method is safe to call concurrently."""

    kind: str  # "memory", "json", "sqlite", "postgresql"

    def __init__(self, instance_id: str) -> None:
        self.instance_id = instance_id  # stored as `owner` of the jobs this instance runs
        # Warnings of operations that failed and will be retried go through this: rate
        # limited while the store keeps failing (a database backend says when it is back).
        self.outage = Outage("the job store")

    @property
    @abstractmethod
    def location(self) -> str:
        """Where the jobs are, for people (never with a password)."""

    # -- life --------------------------------------------------------------------------------

    async def run_background(self) -> None:  # noqa: B027  # most backends have some
        """Background work for as long as the store is open (leases, watching); run in a task
        group and cancel it before `close`. The default has none."""

    @abstractmethod
    async def close(self) -> None:
        """Release connections and locks; idempotent."""

    @abstractmethod
    async def wait_for_change(self) -> None:
        """Return when another process may have changed jobs (a cheap signal, not a diff)."""

    # -- named operations --------------------------------------------------------------------

    async def create(self, records: Sequence[JobRecord]) -> None:
        """Add new jobs, all or none; `JobExistsError` if any id exists."""
        ids = [r.job_id for r in records]
        if len(set(ids)) != len(ids):
            raise JobExistsError("the same job id twice in one create")
        if records:
            await self._insert([copy_record(r) for r in records])

    async def save_progress(self, records: Sequence[JobRecord]) -> set[str]:
        """The owner's latest bodies (progress, checkpoint, ...), status left as stored.

        Returns the ids that were not saved because the job is no longer this owner's or
        has ended: its owner must stop running it.
        """
        items = [
            (r.job_id, Condition(UNFINISHED, r.owner), Change(record=r))
            for r in records
            if r.owner is not None
        ]
        applied = await self._change_many(items, utc_now())
        lost = {job_id for (job_id, _, _), ok in zip(items, applied, strict=True) if not ok}
        return lost | {r.job_id for r in records if r.owner is None}

    async def claim(self, record: JobRecord) -> bool:
        """The owner moves its job to `record.status` (waiting or running), with its body."""
        if record.status not in (JobStatus.WAITING, JobStatus.RUNNING):
            raise ValueError(f"claim moves to waiting or running, not {record.status}")
        return await self._owner_move(record, CLAIMABLE)

    async def finish(self, record: JobRecord) -> bool:
        """The owner ends its job in `record.status` (terminal). False if it already ended."""
        if record.status not in TERMINAL:
            raise ValueError(f"finish moves to a terminal status, not {record.status}")
        return await self._owner_move(record, UNFINISHED)

    async def requeue(self, record: JobRecord) -> bool:
        """The owner puts its job back in the queue (a retry after `run_after`, a re-plan)."""
        return await self._owner_move(record, REQUEUEABLE, status=JobStatus.QUEUED)

    async def release(self, record: JobRecord) -> bool:
        """The owner stops and leaves its job queued for whichever instance runs next."""
        return await self._owner_move(record, ACTIVE, status=JobStatus.QUEUED, owner=ANY_INSTANCE)

    async def adopt(self, record: JobRecord, from_owner: str | None) -> bool:
        """Take over a job of a gone (or no) owner: `record` is its new state (queued with a
        new owner, or failed), written only if the job is still that owner's and active."""
        when = Condition(ACTIVE, from_owner)
        change = Change(record=record, status=record.status, owner=record.owner)
        applied, _ = await self._change(record.job_id, when, change, utc_now())
        return applied

    async def cancel(self, job_id: str) -> tuple[JobRecord, bool]:
        """Any unfinished job -> cancelled. Returns the record and whether this call did it."""
        return await self._move(job_id, Condition(CANCELLABLE), Change(status=JobStatus.CANCELLED))

    async def pause(self, job_id: str) -> tuple[JobRecord, bool]:
        """A queued, waiting or running job -> paused (its owner keeps it, to save its state)."""
        return await self._move(job_id, Condition(PAUSABLE), Change(status=JobStatus.PAUSED))

    async def resume(self, job_id: str, owner: str = ANY_INSTANCE) -> tuple[JobRecord, bool]:
        """A paused job -> queued, now owned (run) by `owner` (by default: any instance)."""
        change = Change(status=JobStatus.QUEUED, owner=owner)
        return await self._move(job_id, Condition(RESUMABLE), change)

    async def delete_finished(
        self, max_age_seconds: float, now: datetime | None = None, principal: str | None = None
    ) -> list[str]:
        """Remove terminal jobs that ended at least `max_age_seconds` before `now` and whose
        `keep_until` has passed (of `principal` only, if given); returns their ids."""
        now = _aware(now or utc_now())
        cutoff = retention_cutoff(max_age_seconds, now)
        if cutoff is None:
            return []
        return await self._delete_finished(Expiry(cutoff, now, principal))

    async def delete_all(self) -> int:
        """Remove every job (`pow-mcp db reset`); returns how many there were."""
        return await self._delete_all()

    async def _owner_move(
        self,
        record: JobRecord,
        allowed: frozenset[JobStatus],
        *,
        status: JobStatus | None = None,
        owner: Owner = ANY,
    ) -> bool:
        if record.owner is None:
            raise ValueError(f"job {record.job_id}: an owner's move needs the owner")
        change = Change(record=record, status=status or record.status, owner=owner)
        applied, _ = await self._change(
            record.job_id, Condition(allowed, record.owner), change, utc_now()
        )
        return applied

    async def _move(self, job_id: str, when: Condition, change: Change) -> tuple[JobRecord, bool]:
        applied, record = await self._change(job_id, when, change, utc_now())
        if record is None:
            raise JobNotFoundError(f"job {job_id} does not exist")
        return record, applied

    # -- queries -----------------------------------------------------------------------------

    @abstractmethod
    async def get(self, job_id: str) -> JobRecord | None: ...

    @abstractmethod
    async def get_many(self, job_ids: Sequence[str]) -> dict[str, JobRecord]:
        """The records of those ids that exist."""

    @abstractmethod
    async def find(self, query: JobQuery) -> tuple[list[JobRecord], int]:
        """A page of jobs and how many match in all."""

    @abstractmethod
    async def runnable(self, owner: str, now: datetime, limit: int) -> list[JobRecord]:
        """Queued jobs of `owner`, not blocked, whose retry delay has passed, in
        `runnable_order`."""

    @abstractmethod
    async def owned(self, owner: str, statuses: frozenset[JobStatus]) -> list[JobRecord]:
        """Every job of `owner` in one of `statuses`."""

    @abstractmethod
    async def count(self, statuses: frozenset[JobStatus], principal: str | None = None) -> int:
        """How many jobs are in `statuses` (of `principal` only, if given)."""

    @abstractmethod
    async def status_counts(self) -> dict[JobStatus, int]: ...

    @abstractmethod
    async def orphans(self) -> list[JobRecord]:
        """Active jobs whose owner is gone (its lease expired, its lock is free), that have
        no owner, or that were handed to `ANY_INSTANCE`: the job manager takes them over."""

    # -- the primitives each backend implements ---------------------------------------------

    @abstractmethod
    async def _insert(self, records: Sequence[JobRecord]) -> None: ...

    @abstractmethod
    async def _change(
        self, job_id: str, when: Condition, change: Change, now: datetime
    ) -> tuple[bool, JobRecord | None]:
        """Apply `change` if the stored job meets `when`; returns (applied, record now)."""

    @abstractmethod
    async def _change_many(
        self, items: Sequence[tuple[str, Condition, Change]], now: datetime
    ) -> list[bool]:
        """Several `_change`s in one write; whether each applied."""

    @abstractmethod
    async def _delete_finished(self, expiry: Expiry) -> list[str]: ...

    @abstractmethod
    async def _delete_all(self) -> int: ...


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


__all__ = [
    "DataDirError",
    "JobExistsError",
    "JobNotFoundError",
    "JobStore",
    "StoreClosedError",
    "StoreConfigError",
    "StoreError",
    "StoreWriteError",
]
