"""Real processes forked from one that has imported what they run (multiprocessing's
forkserver), for tests that start many: a `pow-mcp` server spends about 0.9 s of CPU importing
the MCP SDK before it serves, a store child a third of a second importing the store.

One forkserver per test process: its preload list is global, so every user's modules are
named here, before the first fork starts it.
"""

from __future__ import annotations

import multiprocessing

FORKS = multiprocessing.get_context("forkserver")
FORKS.set_forkserver_preload(
    [
        "tests.store_child",
        "tests.server_fork",
        "pow_mcp.store.sql.store",
        "sqlalchemy.dialects.sqlite.pysqlite",
        "sqlalchemy.dialects.postgresql.psycopg",
    ]
)
