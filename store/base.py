"""The job store interface, its errors and rules, and the memory-only store.

Rules every store follows:

- `create` fails if the id exists; the store sets `owner` to its instance id.
- A terminal record is final: an update that would make it queued, waiting or
  running again is ignored with a warning. Terminal-to-terminal updates apply.
- `update` keeps the stored `owner`.
- Records go in and come out as copies: mutating a record you passed in or got
  back never changes what the store holds.
- `list` is newest first by `created_at` (ties: job id, descending).
- Cleanup removes only terminal records, aged by `completed_at` (else
  `updated_at`, else `created_at`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from enum import Enum
from typing import Protocol

import anyio

from store.locking import is_valid_instance_id, new_instance_id
from store.record import JobRecord, JobStatus, copy_record, utc_now

log = logging.getLogger(__name__)

Page = tuple[list[JobRecord], int]  # a page of records and the total matching
JobIds = list[str]  # (`list` is a method name inside the store classes)


class StoreError(Exception):
    """Base of every error the store raises."""


class DataDirError(StoreError):
    """The data directory cannot be created, read or written."""


class StoreWriteError(StoreError):
    """A write of the jobs file failed: the change is not known to be on disk.

    The change stays pending and is retried by later writes.
    """


class JobExistsError(StoreError):
    pass


class JobNotFoundError(StoreError):
    pass


class StoreClosedError(StoreError):
    pass


class JobStore(Protocol):
    """What the job manager needs from a store. All methods are safe to call concurrently."""

    @property
    def instance_id(self) -> str:
        """This server instance's id; stored as `owner` of the jobs it creates."""
        ...

    @property
    def writes(self) -> int:
        """How many times this store has written the jobs file (0 for memory)."""
        ...

    async def create(self, record: JobRecord) -> JobRecord:
        """Add a new job; on disk before this returns. Returns the stored copy."""
        ...

    async def get(self, job_id: str) -> JobRecord | None: ...

    async def update(self, record: JobRecord) -> bool:
        """Replace a job's record; False if ignored (its stored status is terminal).

        A move to a terminal status is on disk before this returns; other changes are
        visible at once and reach the disk with the next debounced write.
        """
        ...

    async def list(self, status: JobStatus | None = None, limit: int = 50, offset: int = 0) -> Page:
        """A page of records, newest first, and the total count matching `status`."""
        ...

    async def delete_terminal_older_than(
        self, max_age_seconds: float, now: datetime | None = None
    ) -> JobIds:
        """Remove terminal jobs older than `max_age_seconds`; durable; returns their ids."""
        ...

    async def flush(self) -> None:
        """Return once every change made so far is on disk."""
        ...

    async def close(self) -> None:
        """Flush and release the store's locks; idempotent."""
        ...

    async def run_cleanup(self, retention_seconds: float, interval_seconds: float) -> None:
        """Apply the retention period every `interval_seconds`, forever."""
        ...

    async def owner_alive(self, owner: str | None) -> bool:
        """Whether the instance `owner` (a record's `owner`) still runs."""
        ...


class UpdateKind(Enum):
    IGNORE = "ignore"  # the stored record is terminal and the new one is not
    DURABLE = "durable"  # the new record is terminal: wait for the disk
    PLAIN = "plain"  # progress and active-status moves: ride along with the next write


def classify_update(old: JobRecord, new: JobRecord) -> UpdateKind:
    if old.is_terminal and not new.is_terminal:
        log.warning(
            "job %s: ignored an update to %s: its status %s is final",
            new.job_id,
            new.status.value,
            old.status.value,
        )
        return UpdateKind.IGNORE
    return UpdateKind.DURABLE if new.is_terminal else UpdateKind.PLAIN


def check_page_args(limit: int, offset: int) -> None:
    if limit < 0:
        raise ValueError(f"limit must be >= 0, not {limit}")
    if offset < 0:
        raise ValueError(f"offset must be >= 0, not {offset}")


def page(records: Iterable[JobRecord], status: JobStatus | None, limit: int, offset: int) -> Page:
    """Filter, sort newest first and slice; the page holds copies."""
    matching = [r for r in records if status is None or r.status == status]
    matching.sort(key=lambda r: (r.created_at, r.job_id), reverse=True)
    return [copy_record(r) for r in matching[offset : offset + limit]], len(matching)


def finished_at(record: JobRecord) -> datetime:
    """When a terminal record stopped changing, for retention."""
    return record.completed_at or record.updated_at or record.created_at


def expired(
    records: Iterable[JobRecord], max_age_seconds: float, now: datetime | None
) -> list[str]:
    """Ids of terminal records that finished at least `max_age_seconds` before `now`."""
    if max_age_seconds < 0:
        raise ValueError(f"max_age_seconds must be >= 0, not {max_age_seconds}")
    reference = now if now is not None else utc_now()
    if reference.tzinfo is None:
        reference = reference.replace(tzinfo=UTC)
    cutoff = reference - timedelta(seconds=max_age_seconds)
    return [r.job_id for r in records if r.is_terminal and finished_at(r) <= cutoff]


async def cleanup_forever(
    store: JobStore, retention_seconds: float, interval_seconds: float
) -> None:
    """The periodic cleanup behind `JobStore.run_cleanup`; a failed pass is logged and retried."""
    if interval_seconds <= 0:
        raise ValueError(f"interval_seconds must be > 0, not {interval_seconds}")
    while True:
        try:
            removed = await store.delete_terminal_older_than(retention_seconds)
        except StoreError as exc:
            log.warning("periodic cleanup of old jobs failed, will retry: %s", exc)
        else:
            for job_id in removed:
                log.info("job %s: removed by the periodic cleanup", job_id)
        await anyio.sleep(interval_seconds)


class MemoryJobStore:
    """Jobs in memory only (PERSIST_JOBS=false): never touches the file system."""

    def __init__(self, instance_id: str | None = None) -> None:
        self._instance_id = instance_id or new_instance_id()
        if not is_valid_instance_id(self._instance_id):
            raise ValueError(f"invalid instance id {self._instance_id!r}")
        self._records: dict[str, JobRecord] = {}
        self._closed = False

    @property
    def instance_id(self) -> str:
        return self._instance_id

    @property
    def writes(self) -> int:
        return 0

    async def create(self, record: JobRecord) -> JobRecord:
        self._check_open()
        if record.job_id in self._records:
            raise JobExistsError(f"job {record.job_id} already exists")
        stored = copy_record(record)
        stored.owner = self._instance_id
        self._records[stored.job_id] = stored
        return copy_record(stored)

    async def get(self, job_id: str) -> JobRecord | None:
        self._check_open()
        record = self._records.get(job_id)
        return None if record is None else copy_record(record)

    async def update(self, record: JobRecord) -> bool:
        self._check_open()
        old = self._records.get(record.job_id)
        if old is None:
            raise JobNotFoundError(f"job {record.job_id} does not exist")
        if classify_update(old, record) is UpdateKind.IGNORE:
            return False
        stored = copy_record(record)
        stored.owner = old.owner
        self._records[stored.job_id] = stored
        return True

    async def list(self, status: JobStatus | None = None, limit: int = 50, offset: int = 0) -> Page:
        self._check_open()
        check_page_args(limit, offset)
        return page(self._records.values(), status, limit, offset)

    async def delete_terminal_older_than(
        self, max_age_seconds: float, now: datetime | None = None
    ) -> JobIds:
        self._check_open()
        doomed = expired(self._records.values(), max_age_seconds, now)
        for job_id in doomed:
            del self._records[job_id]
        return doomed

    async def flush(self) -> None:
        self._check_open()

    async def close(self) -> None:
        self._closed = True

    async def run_cleanup(self, retention_seconds: float, interval_seconds: float) -> None:
        await cleanup_forever(self, retention_seconds, interval_seconds)

    async def owner_alive(self, owner: str | None) -> bool:
        return owner == self._instance_id  # memory is not shared: nobody else is here

    def _check_open(self) -> None:
        if self._closed:
            raise StoreClosedError("the job store is closed")
