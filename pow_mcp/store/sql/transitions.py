"""The write primitives in SQL: inserts, conditional changes and deletes, each run inside the
caller's write transaction.

A transition is a conditional `UPDATE ... WHERE status IN (...) [AND owner = ...]
RETURNING`, so the database decides which of two racing callers wins.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    Row,
    case,
    delete,
    func,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError

from pow_mcp.store.api import JobExistsError
from pow_mcp.store.query import Expiry
from pow_mcp.store.record import TERMINAL
from pow_mcp.store.sql.queries import chunks
from pow_mcp.store.sql.rows import body
from pow_mcp.store.sql.tables import job_tags, jobs
from pow_mcp.store.transitions import Change, Condition, _Any

_TERMINAL = [s.value for s in TERMINAL]


def insert_jobs(
    conn: Connection, *, rows: list[dict[str, Any]], tags: list[dict[str, str]]
) -> None:
    """Insert the rows and their tags; `JobExistsError` if an id is taken."""
    try:
        conn.execute(insert(jobs), rows)
    except IntegrityError:  # the transaction rolls back: nothing of it is stored
        ids = ", ".join(r["id"] for r in rows[:3]) + (", ..." if len(rows) > 3 else "")
        raise JobExistsError(f"a job with the id {ids} already exists") from None
    if tags:
        conn.execute(insert(job_tags), tags)


def change_one(
    conn: Connection, *, job_id: str, when: Condition, change: Change, now: datetime
) -> tuple[bool, Row[Any] | None]:
    """Apply `change` if the job meets `when`: (applied, the row now, None if no such job)."""
    row = conn.execute(
        update(jobs).where(*_where(job_id, when)).values(**_values(change, now)).returning(*jobs.c)
    ).first()
    if row is not None:
        return True, row
    return False, conn.execute(select(jobs).where(jobs.c.id == job_id)).first()


def change_many(
    conn: Connection, *, items: Sequence[tuple[str, Condition, Change]], now: datetime
) -> list[bool]:
    return [
        conn.execute(
            update(jobs).where(*_where(job_id, when)).values(**_values(change, now))
        ).rowcount
        == 1
        for job_id, when, change in items
    ]


def delete_finished(conn: Connection, *, expiry: Expiry) -> list[str]:
    """Delete the jobs `expiry` covers (and their tags); returns their ids."""
    finished = func.coalesce(jobs.c.completed_at, jobs.c.updated_at, jobs.c.created_at)
    cutoff, now = expiry.cutoff, expiry.now
    mine = [] if expiry.principal is None else [jobs.c.principal == expiry.principal]
    ids = list(
        conn.execute(
            delete(jobs)
            .where(
                jobs.c.status.in_(_TERMINAL),
                finished <= cutoff,
                or_(jobs.c.keep_until.is_(None), jobs.c.keep_until <= now),
                *mine,
            )
            .returning(jobs.c.id)
        ).scalars()
    )
    for part in chunks(ids):
        conn.execute(delete(job_tags).where(job_tags.c.job_id.in_(part)))
    return ids


def delete_everything(conn: Connection) -> int:
    conn.execute(delete(job_tags))
    return int(conn.execute(delete(jobs)).rowcount)


def _where(job_id: str, when: Condition) -> list[ColumnElement[bool]]:
    conditions = [jobs.c.id == job_id, jobs.c.status.in_([s.value for s in when.statuses])]
    if not isinstance(when.owner, _Any):
        conditions.append(jobs.c.owner == when.owner)  # None renders IS NULL
    return conditions


def _values(change: Change, now: datetime) -> dict[str, Any]:
    """The SET clause of `change`: mirrors `store.transitions.apply_change`."""
    values: dict[str, Any] = {"updated_at": now, "version": jobs.c.version + 1}
    if change.record is not None:
        values["record"] = body(change.record)
        values["blocked"] = bool(change.record.blocked_by)
        values["run_after"] = change.record.run_after
    if change.status is not None:
        values["status"] = change.status.value
        if change.status in TERMINAL:
            values["completed_at"] = case(
                (jobs.c.status.in_(_TERMINAL), jobs.c.completed_at), else_=now
            )
    if not isinstance(change.owner, _Any):
        values["owner"] = change.owner
    return values
