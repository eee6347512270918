"""Schema versions: apply the migrations in order, under a lock, or refuse a newer schema.

The applied revision is recorded by Alembic in `alembic_version`. Every server start and
`pow-mcp db migrate` call `upgrade`; `pow-mcp db import` calls it `only_if_empty`, to give a new
database the schema but leave an older one to `db migrate`. Concurrent callers serialise on
the lock (SQLite: the write transaction; PostgreSQL: an advisory lock), and all but the first
find nothing to do.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Literal

from sqlalchemy import Connection, func, inspect, select, text

log = logging.getLogger(__name__)

REVISIONS = ("0001", "0002")  # every revision this version knows, oldest first
HEAD = REVISIONS[-1]
_ADVISORY_LOCK = 0x706F_776D_6370  # "powmcp": serialises migrations on PostgreSQL
MIGRATIONS = Path(__file__).with_name("migrations")

# What opening a database does to its schema: bring it to HEAD (a server), create it only
# where there is none yet (an import), or only check that it is HEAD (other tools).
SchemaAction = Literal["upgrade", "create", "check"]


class SchemaTooNewError(Exception):
    """The database was migrated by a newer pow-mcp; nothing was changed."""


def current_revision(conn: Connection) -> str | None:
    """The schema revision of the database, None if it has none yet."""
    if not inspect(conn).has_table("alembic_version"):
        return None
    revision = conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
    return None if revision is None else str(revision)


def upgrade(conn: Connection, *, only_if_empty: bool = False) -> tuple[str | None, str]:
    """Bring the schema to HEAD inside the caller's write transaction; returns (before,
    after). `SchemaTooNewError` if the database is ahead of this code. With `only_if_empty`,
    only a database without a schema is given one: an older schema is left as it is
    (returned as both before and after)."""
    if conn.dialect.name == "postgresql":
        conn.execute(select(func.pg_advisory_xact_lock(_ADVISORY_LOCK)))
    before = current_revision(conn)
    if before == HEAD:
        return before, HEAD
    if before is not None and before not in REVISIONS:
        raise SchemaTooNewError(
            f"its schema version is {before}, newer than this pow-mcp knows (up to {HEAD}); "
            "upgrade pow-mcp, or point JOBS_DATABASE_URL at another database. Nothing was "
            "changed"
        )
    if only_if_empty and before is not None:
        return before, before
    _run_alembic(conn)
    log.info("jobs database migrated from %s to %s", before or "nothing", HEAD)
    return before, HEAD


def _run_alembic(conn: Connection) -> None:
    # Imported here: Alembic (and Mako) cost start-up time that an up-to-date database skips.
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = conn
    command.upgrade(config, HEAD)
