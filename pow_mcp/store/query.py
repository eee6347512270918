"""Which jobs an operation means: a page of `list_jobs` (`JobQuery`), the order queued jobs
run in, the finished jobs a cleanup removes (`Expiry`); and how the backends that hold their
jobs in Python pick them (the SQL one says the same in SQL).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal, Protocol

from pow_mcp.store.record import TERMINAL, JobRecord, JobStatus, copy_record

SortField = Literal["created_at", "updated_at", "priority"]
SORT_FIELDS: tuple[SortField, ...] = ("created_at", "updated_at", "priority")
MAX_PAGE = 1000


class JobFacts(Protocol):
    """What filters and orders look at: a `JobRecord`, or a backend's lighter stand-in."""

    @property
    def job_id(self) -> str: ...
    @property
    def status(self) -> JobStatus: ...
    @property
    def priority(self) -> int: ...
    @property
    def created_at(self) -> datetime: ...
    @property
    def updated_at(self) -> datetime: ...
    @property
    def finished_at(self) -> datetime: ...
    @property
    def keep_until(self) -> datetime | None: ...
    @property
    def principal(self) -> str | None: ...
    @property
    def batch_id(self) -> str | None: ...
    @property
    def task_id(self) -> str | None: ...
    @property
    def tags(self) -> Iterable[str]: ...


@dataclass(frozen=True, slots=True)
class JobQuery:
    """A filtered, sorted page of jobs (`list_jobs`)."""

    statuses: frozenset[JobStatus] | None = None
    tags: frozenset[str] = frozenset()  # jobs carrying all of them
    batch_id: str | None = None
    tasks_only: bool = False  # only the jobs that head an MCP task (`task_id` set)
    id_prefix: str = ""  # only ids starting with it (completion of a job id)
    created_after: datetime | None = None
    created_before: datetime | None = None
    visible_to: str | None = None  # a principal: its own jobs and those of nobody
    sort_by: SortField = "created_at"
    descending: bool = True
    limit: int = 50
    offset: int = 0

    def __post_init__(self) -> None:
        if not 0 <= self.limit <= MAX_PAGE:
            raise ValueError(f"limit must be 0..{MAX_PAGE}, not {self.limit}")
        if self.offset < 0:
            raise ValueError(f"offset must be >= 0, not {self.offset}")
        if self.sort_by not in SORT_FIELDS:
            raise ValueError(f"sort_by must be one of {', '.join(SORT_FIELDS)}")

    def matches(self, record: JobFacts) -> bool:
        """The filter, for backends that filter in Python (the SQL one builds a WHERE)."""
        if self.statuses is not None and record.status not in self.statuses:
            return False
        if self.batch_id is not None and record.batch_id != self.batch_id:
            return False
        if self.tasks_only and record.task_id is None:
            return False
        if not record.job_id.startswith(self.id_prefix):
            return False
        if self.tags and not self.tags.issubset(set(record.tags)):
            return False
        if self.created_after is not None and record.created_at <= self.created_after:
            return False
        if self.created_before is not None and record.created_at >= self.created_before:
            return False
        return visible(record.principal, self.visible_to)

    def sort_key(self, record: JobFacts) -> tuple[object, ...]:
        """Sort key; ties broken by creation time, then id, in the same direction."""
        first: object = {
            "created_at": record.created_at,
            "updated_at": record.updated_at,
            "priority": record.priority,
        }[self.sort_by]
        return (first, record.created_at, record.job_id)


def visible(owner_principal: str | None, viewer: str | None) -> bool:
    """Whether a job of `owner_principal` is visible to `viewer` (None sees everything)."""
    return viewer is None or owner_principal is None or owner_principal == viewer


def retention_cutoff(max_age_seconds: float, now: datetime) -> datetime | None:
    """`now - max_age_seconds`, or None when that lies before any representable time."""
    if max_age_seconds < 0:
        raise ValueError(f"max_age_seconds must be >= 0, not {max_age_seconds}")
    try:
        return now - timedelta(seconds=max_age_seconds)
    except OverflowError:
        return None


def page(records: Iterable[JobRecord], query: JobQuery) -> tuple[list[JobRecord], int]:
    """Filter, sort and slice in Python; the page holds copies."""
    matching = [r for r in records if query.matches(r)]
    matching.sort(key=query.sort_key, reverse=query.descending)
    chosen = matching[query.offset : query.offset + query.limit]
    return [copy_record(r) for r in chosen], len(matching)


def runnable_order(record: JobFacts) -> tuple[int, datetime, str]:
    """The order the dispatcher takes queued jobs in: priority, then oldest first."""
    return (-record.priority, record.created_at, record.job_id)


@dataclass(frozen=True, slots=True)
class Expiry:
    """Which finished jobs a cleanup removes."""

    cutoff: datetime  # ended by then
    now: datetime  # past any keep_until (an MCP task's ttl) by then
    principal: str | None = None  # of this principal only, if given

    def covers(self, record: JobFacts) -> bool:
        return (
            record.status in TERMINAL
            and record.finished_at <= self.cutoff
            and (record.keep_until is None or record.keep_until <= self.now)
            and (self.principal is None or record.principal == self.principal)
        )


def is_runnable(record: JobRecord, owner: str, now: datetime) -> bool:
    return (
        record.status is JobStatus.QUEUED
        and record.owner == owner
        and not record.blocked_by
        and (record.run_after is None or record.run_after <= now)
    )


__all__ = [
    "MAX_PAGE",
    "SORT_FIELDS",
    "Expiry",
    "JobFacts",
    "JobQuery",
    "SortField",
    "is_runnable",
    "page",
    "retention_cutoff",
    "runnable_order",
    "visible",
]
