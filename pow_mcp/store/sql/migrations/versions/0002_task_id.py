"""jobs.task_id: the MCP task a job heads, for tasks/get and tasks/list.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # A nullable column without a default: instant on both databases, existing rows untouched.
    op.add_column("jobs", sa.Column("task_id", sa.String(128)))
    heads_task = sa.text("task_id IS NOT NULL")
    op.create_index(
        "jobs_task_created_at",
        "jobs",
        ["created_at", "id"],
        sqlite_where=heads_task,
        postgresql_where=heads_task,
    )


def downgrade() -> None:
    op.drop_index("jobs_task_created_at", "jobs")
    op.drop_column("jobs", "task_id")
