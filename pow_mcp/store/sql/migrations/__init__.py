"""Alembic migrations of the jobs database, applied by `store.sql.migrate`."""
