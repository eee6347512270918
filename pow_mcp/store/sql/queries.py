"""The read side in SQL: the statement behind each query of the store interface (a job, a
page of `list_jobs`, the runnable, the owned, counts, orphans)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Connection, Row, Select, and_, func, or_, select

from pow_mcp.store.query import JobQuery
from pow_mcp.store.record import ACTIVE, JobStatus
from pow_mcp.store.sql.tables import instances, job_tags, jobs

_ACTIVE = [s.value for s in ACTIVE]


def chunks(items: Sequence[str], size: int = 500) -> Iterator[Sequence[str]]:
    """`items` a few hundred at a time: an `IN (...)` each, within the dialects' limits."""
    for start in range(0, len(items), size):
        yield items[start : start + size]


def one(job_id: str) -> Select[Any]:
    return select(jobs).where(jobs.c.id == job_id)


def many(conn: Connection, job_ids: list[str]) -> list[Row[Any]]:
    rows: list[Row[Any]] = []
    for part in chunks(job_ids):
        rows += conn.execute(select(jobs).where(jobs.c.id.in_(part))).all()
    return rows


def page(conn: Connection, query: JobQuery) -> tuple[list[Row[Any]], int]:
    """The rows of one page of `query`, and how many match in all."""
    where = _query_where(query)
    total = conn.execute(select(func.count()).select_from(jobs).where(*where)).scalar_one()
    statement = select(jobs).where(*where).order_by(*_order(query))
    rows = conn.execute(statement.limit(query.limit).offset(query.offset)).all()
    return list(rows), int(total)


def runnable(owner: str, now: datetime, limit: int) -> Select[Any]:
    return (
        select(jobs)
        .where(
            jobs.c.owner == owner,
            jobs.c.status == JobStatus.QUEUED.value,
            jobs.c.blocked.is_(False),
            or_(jobs.c.run_after.is_(None), jobs.c.run_after <= now),
        )
        .order_by(jobs.c.priority.desc(), jobs.c.created_at, jobs.c.id)
        .limit(limit)
    )


def owned(owner: str, statuses: frozenset[JobStatus]) -> Select[Any]:
    return select(jobs).where(jobs.c.owner == owner, jobs.c.status.in_([s.value for s in statuses]))


def count(statuses: frozenset[JobStatus], principal: str | None) -> Select[Any]:
    statement = (
        select(func.count()).select_from(jobs).where(jobs.c.status.in_([s.value for s in statuses]))
    )
    if principal is not None:
        statement = statement.where(jobs.c.principal == principal)
    return statement


def status_counts() -> Select[Any]:
    return select(jobs.c.status, func.count()).group_by(jobs.c.status)


def orphans(instance_id: str) -> Select[Any]:
    """Active jobs of no owner, or of an owner without a row in `instances` (but ours)."""
    return select(jobs).where(
        jobs.c.status.in_(_ACTIVE),
        or_(
            jobs.c.owner.is_(None),
            and_(
                jobs.c.owner != instance_id,
                jobs.c.owner.not_in(select(instances.c.id)),
            ),
        ),
    )


def _query_where(query: JobQuery) -> list[ColumnElement[bool]]:
    where: list[ColumnElement[bool]] = []
    if query.statuses is not None:
        where.append(jobs.c.status.in_([s.value for s in query.statuses]))
    if query.batch_id is not None:
        where.append(jobs.c.batch_id == query.batch_id)
    if query.tasks_only:
        where.append(jobs.c.task_id.is_not(None))
    if query.id_prefix:
        where.append(jobs.c.id.startswith(query.id_prefix, autoescape=True))
    if query.created_after is not None:
        where.append(jobs.c.created_at > query.created_after)
    if query.created_before is not None:
        where.append(jobs.c.created_at < query.created_before)
    if query.visible_to is not None:
        where.append(or_(jobs.c.principal.is_(None), jobs.c.principal == query.visible_to))
    if query.tags:
        tagged = (
            select(job_tags.c.job_id)
            .where(job_tags.c.tag.in_(sorted(query.tags)))
            .group_by(job_tags.c.job_id)
            .having(func.count() == len(query.tags))
        )
        where.append(jobs.c.id.in_(tagged))
    return where


def _order(query: JobQuery) -> list[Any]:
    first = {"created_at": jobs.c.created_at, "updated_at": jobs.c.updated_at}.get(
        query.sort_by, jobs.c.priority
    )
    columns = (
        [first, jobs.c.created_at, jobs.c.id]
        if first is not jobs.c.created_at
        else [
            jobs.c.created_at,
            jobs.c.id,
        ]
    )
    return [c.desc() if query.descending else c.asc() for c in columns]
