"""The database backends: SQLite and PostgreSQL through SQLAlchemy Core, with migrations."""
