"""The database schema: what is filtered or sorted on as columns, the rest as JSON.

The columns are the truth for a job's identity and status (`id`, `status`, `owner`, the
timestamps, ...); `record` holds everything else of the job record. Changing this file
means a new migration in `store/sql/migrations/versions`.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Dialect,
    Index,
    Integer,
    MetaData,
    SmallInteger,
    String,
    Table,
    Text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.types import TypeDecorator


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes on every dialect (SQLite has no time zones: stored as UTC)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        value = value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        assert isinstance(value, datetime)
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


Json = JSON().with_variant(JSONB(), "postgresql")

metadata = MetaData()

jobs = Table(
    "jobs",
    metadata,
    Column("id", String(128), primary_key=True),
    Column("status", String(16), nullable=False),
    Column("priority", SmallInteger, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    Column("completed_at", UTCDateTime),
    Column("owner", String(128)),
    Column("principal", String(128)),
    Column("batch_id", String(128)),
    Column("task_id", String(128)),  # revision 0002
    Column("tags", Json, nullable=False),
    Column("blocked", Boolean, nullable=False),
    Column("run_after", UTCDateTime),
    Column("keep_until", UTCDateTime),
    Column("version", Integer, nullable=False),  # bumped by every write
    Column("record", Json, nullable=False),
)
# Every order `list_jobs` offers ends in (created_at, id): an index per order, ties included.
Index("jobs_created_at", jobs.c.created_at, jobs.c.id)
Index("jobs_updated_at", jobs.c.updated_at, jobs.c.created_at, jobs.c.id)
Index("jobs_status_created_at", jobs.c.status, jobs.c.created_at, jobs.c.id)
Index("jobs_priority_created_at", jobs.c.priority, jobs.c.created_at, jobs.c.id)
Index("jobs_owner_status", jobs.c.owner, jobs.c.status, jobs.c.priority, jobs.c.created_at)
Index("jobs_batch_id", jobs.c.batch_id)
# tasks/list: the jobs that head a task, newest first; few rows carry a task_id, so partial.
_HEADS_TASK = jobs.c.task_id.is_not(None)
Index(
    "jobs_task_created_at",
    jobs.c.created_at,
    jobs.c.id,
    sqlite_where=_HEADS_TASK,
    postgresql_where=_HEADS_TASK,
)
Index("jobs_principal_status", jobs.c.principal, jobs.c.status)

# One row per (job, tag), for indexed "carrying all these tags" queries.
job_tags = Table(
    "job_tags",
    metadata,
    Column("job_id", String(128), primary_key=True),
    Column("tag", String(64), primary_key=True),
)
Index("job_tags_tag", job_tags.c.tag, job_tags.c.job_id)

# Server instances and their leases: an instance renews its row while it lives.
instances = Table(
    "instances",
    metadata,
    Column("id", String(128), primary_key=True),
    Column("host", Text, nullable=False),
    Column("pid", BigInteger, nullable=False),
    Column("started_at", UTCDateTime, nullable=False),
    Column("renewed_at", UTCDateTime, nullable=False),
    Column("lease_expires_at", UTCDateTime, nullable=False),
    Column("heartbeat", BigInteger, nullable=False),
)
