"""Alembic environment: runs on the connection `store.sql.migrate` hands over (already in
a transaction that holds the migration lock)."""

from alembic import context

from pow_mcp.store.sql.tables import metadata

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("migrate the jobs database with `pow-mcp db migrate`")

context.configure(
    connection=connection,
    target_metadata=metadata,
    render_as_batch=connection.dialect.name == "sqlite",
    transaction_per_migration=False,
)
with context.begin_transaction():
    context.run_migrations()
