"""A job record as a row of `jobs` and back: what is filtered on in columns, the rest JSON.

A row whose stored JSON is damaged reads as a marker, not as an error of the whole query:
one bad row costs its own job only.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from typing import Any

from pydantic import ValidationError
from sqlalchemy import Row

from pow_mcp.store.api import StoreError
from pow_mcp.store.record import FutureRecordError, JobRecord

log = logging.getLogger(__name__)

# Record fields that live in columns, not in the `record` JSON.
_COLUMN_FIELDS = frozenset(
    {
        "job_id",
        "status",
        "created_at",
        "updated_at",
        "completed_at",
        "owner",
        "principal",
        "batch_id",
        "task_id",
        "tags",
        "run_after",
        "keep_until",
    }
)


def body(record: JobRecord) -> dict[str, Any]:
    """What of `record` goes into the `record` JSON column."""
    return record.model_dump(mode="json", exclude=set(_COLUMN_FIELDS))


def row_values(record: JobRecord) -> dict[str, Any]:
    """The new row of `record`."""
    return {
        "id": record.job_id,
        "status": record.status.value,
        "priority": record.priority,
        "created_at": record.created_at,
        "updated_at": record.updated_at,
        "completed_at": record.completed_at,
        "owner": record.owner,
        "principal": record.principal,
        "batch_id": record.batch_id,
        "task_id": record.task_id,
        "tags": list(record.tags),
        "blocked": bool(record.blocked_by),
        "run_after": record.run_after,
        "keep_until": record.keep_until,
        "version": 0,
        "record": body(record),
    }


UNREADABLE = "__pow_mcp_unreadable__"


class UnreadableRecordError(StoreError):
    """A job's stored JSON is damaged; its row is left as it is."""


def lenient_json(text: str) -> Any:
    """The engine's JSON decoder: a damaged value reads as a marker instead of failing the
    whole query (SQLite: the file itself may have been damaged)."""
    try:
        return json.loads(text)
    except ValueError as exc:
        return {UNREADABLE: str(exc)}


def record_of(row: Row[Any]) -> JobRecord:
    """The record a row of `jobs` holds; `UnreadableRecordError` if its JSON is damaged."""
    for name in ("record", "tags"):
        value = getattr(row, name)
        if isinstance(value, dict) and UNREADABLE in value:
            raise UnreadableRecordError(
                f"job {row.id}: its stored {name} is not JSON ({value[UNREADABLE]}); the row "
                "is left as it is"
            )
    data = dict(row.record)
    data.update(
        job_id=row.id,
        status=row.status,
        created_at=row.created_at,
        updated_at=row.updated_at,
        completed_at=row.completed_at,
        owner=row.owner,
        principal=row.principal,
        batch_id=row.batch_id,
        task_id=row.task_id,
        tags=row.tags,
        run_after=row.run_after,
        keep_until=row.keep_until,
    )
    try:
        return JobRecord.model_validate(data)
    except ValidationError as exc:
        cause = exc.errors()[0].get("ctx", {}).get("error")
        if isinstance(cause, FutureRecordError):
            raise cause from None
        raise


def readable(rows: Sequence[Row[Any]]) -> list[JobRecord]:
    """The rows as records; one this version cannot read is skipped with a warning."""
    records = []
    for row in rows:
        try:
            records.append(record_of(row))
        except (FutureRecordError, ValidationError, UnreadableRecordError) as exc:
            log.warning("job %s: skipped, its stored record cannot be read: %s", row.id, exc)
    return records
