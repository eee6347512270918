"""JOBS_DATABASE_URL: which database, where, and how to show it without its password."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from pow_mcp.store.api import StoreConfigError

VARIABLE = "JOBS_DATABASE_URL"
_POSTGRES_SCHEMES = ("postgresql", "postgres", "postgresql+psycopg")
_EXAMPLES = (
    "sqlite:///jobs.db (in the data directory), sqlite:////abs/path/jobs.db, "
    "or postgresql://user:password@host:5432/dbname"
)


@dataclass(frozen=True)
class DatabaseUrl:
    """A parsed JOBS_DATABASE_URL: `dialect` is "sqlite" or "postgresql"."""

    dialect: str
    sqlalchemy_url: str  # what SQLAlchemy connects with (may hold the password)
    path: Path | None  # the SQLite file
    password: str | None

    @property
    def display(self) -> str:
        """The URL for logs and messages: the password replaced by ***."""
        return mask(self.sqlalchemy_url.replace("postgresql+psycopg://", "postgresql://"), self)

    @property
    def libpq(self) -> str:
        """The plain postgresql:// form psycopg's own connections take."""
        return self.sqlalchemy_url.replace("postgresql+psycopg://", "postgresql://", 1)


def parse_database_url(text: str, data_dir: Path) -> DatabaseUrl:
    """Understand JOBS_DATABASE_URL; `StoreConfigError` naming the variable if it is wrong."""
    text = text.strip()
    scheme, sep, rest = text.partition("://")
    if not sep:
        raise StoreConfigError(f"{VARIABLE} is not a URL ({_redact(text)}); use {_EXAMPLES}")
    scheme = scheme.lower()
    if scheme == "sqlite":
        return _sqlite(rest, data_dir)
    if scheme in _POSTGRES_SCHEMES:
        return _postgres(rest)
    raise StoreConfigError(
        f"{VARIABLE} has the unknown scheme {scheme!r}; use {_EXAMPLES} "
        "(or unset it to keep jobs in the JSON file)"
    )


def _sqlite(rest: str, data_dir: Path) -> DatabaseUrl:
    # sqlite:///relative.db -> rest "/relative.db"; sqlite:////abs.db -> rest "//abs.db".
    if not rest.startswith("/") or rest in ("/", "//"):
        raise StoreConfigError(
            f"{VARIABLE}=sqlite://{rest} names no file; use sqlite:///jobs.db (relative to the "
            "data directory) or sqlite:////absolute/path/jobs.db"
        )
    if "?" in rest:
        raise StoreConfigError(f"{VARIABLE}: query options are not supported for SQLite")
    path = Path(rest[1:])
    path = path if path.is_absolute() else data_dir.absolute() / path
    return DatabaseUrl("sqlite", f"sqlite:///{path}", path, None)


def _postgres(rest: str) -> DatabaseUrl:
    parts = urlsplit("postgresql://" + rest)
    try:
        port = parts.port
    except ValueError:
        raise StoreConfigError(f"{VARIABLE} has a port that is not a number") from None
    if not parts.hostname and "host=" not in parts.query:
        raise StoreConfigError(
            f"{VARIABLE} names no PostgreSQL host; use postgresql://user:password@host:5432/dbname"
        )
    if not parts.path.strip("/"):
        raise StoreConfigError(f"{VARIABLE} names no database; add /dbname after the host")
    del port
    url = urlunsplit(("postgresql+psycopg", parts.netloc, parts.path, parts.query, ""))
    return DatabaseUrl("postgresql", url, None, parts.password)


def mask(text: str, url: DatabaseUrl | None) -> str:
    """`text` with the URL's password (and any user:password@ in it) replaced by ***."""
    if url is not None and url.password:
        text = text.replace(url.password, "***")
    return _redact(text)


def _redact(text: str) -> str:
    return re.sub(r"(://[^:/@\s]*):[^@\s]*@", r"\1:***@", text)
