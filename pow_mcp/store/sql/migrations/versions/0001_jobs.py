"""The jobs, job_tags and instances tables.

Revision ID: 0001
Revises:
Create Date: 2026-11-28
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

Json = sa.JSON().with_variant(JSONB(), "postgresql")
UTCDateTime = sa.DateTime(timezone=True)  # stored as UTC, naive on SQLite


def upgrade() -> None:
    op.create_table(
        "jobs",
        sa.Column("id", sa.String(128), primary_key=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("priority", sa.SmallInteger, nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("updated_at", UTCDateTime, nullable=False),
        sa.Column("completed_at", UTCDateTime),
        sa.Column("owner", sa.String(128)),
        sa.Column("principal", sa.String(128)),
        sa.Column("batch_id", sa.String(128)),
        sa.Column("tags", Json, nullable=False),
        sa.Column("blocked", sa.Boolean, nullable=False),
        sa.Column("run_after", UTCDateTime),
        sa.Column("keep_until", UTCDateTime),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("record", Json, nullable=False),
    )
    op.create_index("jobs_created_at", "jobs", ["created_at", "id"])
    op.create_index("jobs_updated_at", "jobs", ["updated_at", "created_at", "id"])
    op.create_index("jobs_status_created_at", "jobs", ["status", "created_at", "id"])
    op.create_index("jobs_priority_created_at", "jobs", ["priority", "created_at", "id"])
    op.create_index("jobs_owner_status", "jobs", ["owner", "status", "priority", "created_at"])
    op.create_index("jobs_batch_id", "jobs", ["batch_id"])
    op.create_index("jobs_principal_status", "jobs", ["principal", "status"])
    op.create_table(
        "job_tags",
        sa.Column("job_id", sa.String(128), primary_key=True),
        sa.Column("tag", sa.String(64), primary_key=True),
    )
    op.create_index("job_tags_tag", "job_tags", ["tag", "job_id"])
    op.create_table(
        "instances",
        sa.Column("id", sa.String(128), primary_key=True),
        sa.Column("host", sa.Text, nullable=False),
        sa.Column("pid", sa.BigInteger, nullable=False),
        sa.Column("started_at", UTCDateTime, nullable=False),
        sa.Column("renewed_at", UTCDateTime, nullable=False),
        sa.Column("lease_expires_at", UTCDateTime, nullable=False),
        sa.Column("heartbeat", sa.BigInteger, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("instances")
    op.drop_table("job_tags")
    op.drop_table("jobs")
