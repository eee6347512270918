"""`pow-mcp db` on every store (in the test's process, tests/cli_helpers.py), and the start-up
errors of a store that cannot work (real server processes)."""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import psycopg
import pytest

from pow_mcp.store import JobRecord, JobStatus, StoreSettings, connect
from pow_mcp.store.jsonfile.codec import encode_line, render
from tests.cli_helpers import pow_mcp, pow_mcp_process
from tests.conftest import PERSISTENT_KINDS
from tests.faults import small_disk
from tests.mcp_helpers import call
from tests.mcp_helpers import connect as connect_server
from tests.pg_server import PostgresServer
from tests.store_helpers import make_record

PERSISTENT = pytest.mark.parametrize("kind", PERSISTENT_KINDS, indirect=True)


async def seed(settings: StoreSettings, statuses: list[JobStatus]) -> list[str]:
    store = await connect(settings)
    try:
        records = [make_record(status, owner=store.instance_id) for status in statuses]
        await store.create(records)
        return [r.job_id for r in records]
    finally:
        await store.close()


@PERSISTENT
def test_db_status_migrate_export_import_reset(
    kind: str, store_settings: StoreSettings, tmp_path: Path
) -> None:
    done = pow_mcp(store_settings, "db", "migrate")
    assert done.returncode == 0, done.stderr
    ids = anyio.run(
        seed, store_settings, [JobStatus.COMPLETED, JobStatus.COMPLETED, JobStatus.FAILED]
    )

    status = pow_mcp(store_settings, "db", "status", "--json")
    assert status.returncode == 0, status.stderr
    info = json.loads(status.stdout)
    assert info["backend"] == kind and info["total"] == 3
    assert info["jobs"]["completed"] == 2 and info["jobs"]["failed"] == 1
    assert info["schema"] == ("jobs.json" if kind == "json" else "0002")
    text = pow_mcp(store_settings, "db", "status").stdout
    assert f"backend:  {kind}" in text and "completed 2" in text

    again = pow_mcp(store_settings, "db", "migrate")
    assert again.returncode == 0 and (
        "nothing to do" in again.stdout or "no schema" in again.stdout
    )

    exported = tmp_path / "export.json"
    assert pow_mcp(store_settings, "db", "export", str(exported)).returncode == 0
    assert set(json.loads(exported.read_text())) == set(ids)

    refused = pow_mcp(store_settings, "db", "reset")
    assert refused.returncode == 1 and "--force" in refused.stderr
    assert json.loads(pow_mcp(store_settings, "db", "status", "--json").stdout)["total"] == 3
    reset = pow_mcp(store_settings, "db", "reset", "--force")
    assert reset.returncode == 0 and "deleted 3 jobs" in reset.stdout
    assert json.loads(pow_mcp(store_settings, "db", "status", "--json").stdout)["total"] == 0

    imported = pow_mcp(store_settings, "db", "import", str(exported))
    assert imported.returncode == 0 and "imported 3 jobs" in imported.stdout
    assert json.loads(pow_mcp(store_settings, "db", "status", "--json").stdout)["total"] == 3
    usage = pow_mcp(store_settings, "db", "vacuum")
    assert usage.returncode == 2


def test_a_database_password_never_shows(postgres: PostgresServer, tmp_path: Path) -> None:
    url = postgres.url(postgres.create_database())
    settings = StoreSettings(tmp_path, database_url=url)
    outputs = [
        pow_mcp(settings, "db", "migrate"),
        pow_mcp(settings, "db", "status"),
        pow_mcp(settings, "db", "status", "--json"),
    ]
    wrong = StoreSettings(tmp_path, database_url=postgres.url("postgres", password="wrong-pw-x"))
    outputs.append(pow_mcp(wrong, "db", "status"))
    outputs.append(pow_mcp_process(wrong))  # a server that cannot start
    for done in outputs:
        assert postgres.password not in done.stdout + done.stderr
        assert "wrong-pw-x" not in done.stdout + done.stderr
    assert "***" in outputs[1].stdout
    assert outputs[-1].returncode == 1 and "password" in outputs[-1].stderr


def _refuses_to_start(settings: StoreSettings, *needles: str, **env: str) -> None:
    done = pow_mcp_process(settings, **env)
    assert done.returncode in (1, 2), done.stderr
    lines = [line for line in done.stderr.splitlines() if line.startswith("pow-mcp:")]
    assert len(lines) == 1, done.stderr
    assert "JOBS_DATABASE_URL" in lines[0] or "PERSIST_JOBS" in lines[0]
    for needle in needles:
        assert needle in lines[0], lines[0]
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize(
    ("url", "needle"),
    [
        ("not a url", "not a URL"),
        ("mysql://u:p@h/db", "unknown scheme"),
        ("sqlite://", "names no file"),
        ("postgresql://u:p@:5432/db", "no PostgreSQL host"),
        ("postgresql://u:p@127.0.0.1:1/db", "cannot use the PostgreSQL database"),
    ],
)
def test_a_bad_url_stops_start_up(tmp_path: Path, url: str, needle: str) -> None:
    _refuses_to_start(StoreSettings(tmp_path, database_url=url), needle)


def test_memory_only_with_a_database_is_refused(tmp_path: Path) -> None:
    settings = StoreSettings(tmp_path, database_url="sqlite:///jobs.db")
    _refuses_to_start(settings, "unset one", PERSIST_JOBS="false")


@pytest.mark.parametrize("args", [["db", "status"], ["db", "export", "out.json"], ["jobs", "list"]])
@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("sqlite:///{tmp}/typo/jobs.db", "there is no SQLite file {tmp}/typo/jobs.db"),
        (None, "there is no jobs data directory {tmp}/typo"),
    ],
)
def test_a_missing_store_is_refused_and_not_created(
    tmp_path: Path, args: list[str], url: str | None, message: str
) -> None:
    # A mistyped path: the commands that read say so, and leave no empty store behind.
    data_dir = tmp_path / ("data" if url else "typo")
    settings = StoreSettings(data_dir, database_url=url and url.format(tmp=tmp_path))
    done = pow_mcp(settings, *[str(tmp_path / a) if a.endswith(".json") else a for a in args])
    assert done.returncode == 1, done
    assert message.format(tmp=tmp_path) in done.stdout + done.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_a_damaged_sqlite_file_is_left_untouched(tmp_path: Path) -> None:
    damaged = tmp_path / "jobs.db"
    damaged.write_bytes(b"SQLite format 3\x00" + os.urandom(4000))
    before = damaged.read_bytes()
    _refuses_to_start(StoreSettings(tmp_path, database_url="sqlite:///jobs.db"), "jobs.db")
    assert damaged.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["jobs.db"]


def test_a_read_only_sqlite_file_is_refused(tmp_path: Path) -> None:
    with small_disk(tmp_path / "disk") as disk:
        settings = StoreSettings(disk, database_url="sqlite:///jobs.db")
        assert pow_mcp(settings, "db", "migrate").returncode == 0
        before = (disk / "jobs.db").read_bytes()
        subprocess.run(["mount", "-o", "remount,ro", str(disk)], check=True)
        _refuses_to_start(settings, "read-only", "writable")
        assert (disk / "jobs.db").read_bytes() == before


def test_a_read_only_directory_is_refused(tmp_path: Path) -> None:
    settings = StoreSettings(tmp_path, database_url="sqlite:////proc/jobs.db")
    _refuses_to_start(settings, "/proc/jobs.db")


def test_a_locked_sqlite_file_is_refused(tmp_path: Path) -> None:
    settings = StoreSettings(tmp_path, database_url="sqlite:///jobs.db")
    assert pow_mcp(settings, "db", "migrate").returncode == 0
    holder = sqlite3.connect(tmp_path / "jobs.db", isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")  # another program holds the database
    try:
        _refuses_to_start(settings, "locked")
    finally:
        holder.close()


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"], indirect=True)
def test_a_newer_schema_is_refused_and_left_alone(kind: str, store_settings: StoreSettings) -> None:
    assert pow_mcp(store_settings, "db", "migrate").returncode == 0
    anyio.run(seed, store_settings, [JobStatus.COMPLETED])
    _set_revision(store_settings, "9999")
    _refuses_to_start(store_settings, "9999", "newer")
    migrate = pow_mcp(store_settings, "db", "migrate")
    assert migrate.returncode == 1 and "newer" in migrate.stderr
    imported = pow_mcp(store_settings, "db", "import", str(_jobs_file(store_settings.data_dir)))
    assert imported.returncode == 1 and "newer" in imported.stderr
    assert _revision(store_settings) == "9999" and _job_rows(store_settings) == 1


def _set_revision(settings: StoreSettings, revision: str) -> None:
    with _db(settings) as conn:
        conn.execute(f"UPDATE alembic_version SET version_num = '{revision}'")


def _revision(settings: StoreSettings) -> str:
    with _db(settings) as conn:
        row = conn.execute("SELECT version_num FROM alembic_version").fetchone()
        assert row is not None
        return str(row[0])


@contextlib.contextmanager
def _db(settings: StoreSettings) -> Iterator[Any]:
    """A raw connection to the settings' database (sqlite3 or psycopg), autocommitting."""
    url = settings.database_url or ""
    if url.startswith("sqlite"):
        conn: Any = sqlite3.connect(settings.data_dir / "jobs.db", isolation_level=None)
    else:
        conn = psycopg.connect(url, autocommit=True)
    try:
        yield conn
    finally:
        conn.close()


async def test_a_server_on_a_fresh_database_migrates_and_serves(
    tmp_path: Path, pg_url: str
) -> None:
    async with connect_server(tmp_path, JOBS_DATABASE_URL=pg_url) as client:
        job = await call(client, "start_proof_of_work", prefix="pg-", difficulty=2)
        done = await call(client, "wait_for_job", job_id=job["job_id"])
    assert done["status"] == "completed"


def _first_schema(settings: StoreSettings, record: JobRecord) -> None:
    """Give the settings' database the first schema (0001), with `record` in it, as a
    pow-mcp of that version would have left it."""
    from alembic import command
    from alembic.config import Config
    from sqlalchemy import create_engine

    from pow_mcp.store.sql.migrate import MIGRATIONS
    from pow_mcp.store.sql.rows import row_values
    from pow_mcp.store.sql.tables import jobs
    from pow_mcp.store.url import parse_database_url

    url = parse_database_url(settings.database_url or "", settings.data_dir)
    row = row_values(record)
    del row["task_id"]  # the first schema has no such column
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    old = create_engine(url.sqlalchemy_url)
    try:
        with old.begin() as conn:
            config = Config()
            config.set_main_option("script_location", str(MIGRATIONS))
            config.attributes["connection"] = conn
            command.upgrade(config, "0001")
            conn.execute(jobs.insert().values(**row))
    finally:
        old.dispose()


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"], indirect=True)
def test_a_database_of_the_first_schema_is_upgraded_with_its_jobs(
    kind: str, store_settings: StoreSettings
) -> None:
    record = make_record(JobStatus.COMPLETED)
    _first_schema(store_settings, record)

    migrate = pow_mcp(store_settings, "db", "migrate")
    assert migrate.returncode == 0, migrate.stderr
    assert _revision(store_settings) == "0002"

    async def read_back() -> None:
        store = await connect(store_settings)
        try:
            got = await store.get(record.job_id)
            assert got is not None and got.result == record.result and got.task_id is None
        finally:
            await store.close()

    anyio.run(read_back)


# -- `db import` into a database without the current schema ----------------------------------


def _jobs_file(where: Path, count: int = 3) -> Path:
    """A jobs.json-format file of `count` finished jobs (what `db export` writes)."""
    where.mkdir(parents=True, exist_ok=True)
    file = where.parent / f"{where.name}-import.json"
    records = [make_record(JobStatus.COMPLETED) for _ in range(count)]
    file.write_bytes(render(encode_line(r.job_id, r) for r in records))
    return file


def _job_rows(settings: StoreSettings) -> int:
    with _db(settings) as conn:
        row = conn.execute("SELECT count(*) FROM jobs").fetchone()
        assert row is not None
        return int(row[0])


def _tables(settings: StoreSettings) -> list[str]:
    """The tables of the settings' database; [] for a SQLite file that is not there."""
    url = settings.database_url or ""
    if url.startswith("sqlite") and not (settings.data_dir / "jobs.db").exists():
        return []
    query = (
        "SELECT name FROM sqlite_master WHERE type = 'table'"
        if url.startswith("sqlite")
        else "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
    )
    with _db(settings) as conn:
        return sorted(str(row[0]) for row in conn.execute(query).fetchall())


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"], indirect=True)
def test_db_import_into_a_new_database_creates_its_schema(
    kind: str, store_settings: StoreSettings, tmp_path: Path
) -> None:
    file = _jobs_file(tmp_path / "export")
    assert _tables(store_settings) == []

    imported = pow_mcp(store_settings, "db", "import", str(file))
    assert imported.returncode == 0, imported.stderr
    assert "created the jobs schema 0002 in " in imported.stdout
    assert "imported 3 jobs" in imported.stdout
    assert _revision(store_settings) == "0002" and _job_rows(store_settings) == 3
    status = json.loads(pow_mcp(store_settings, "db", "status", "--json").stdout)
    assert status["schema"] == "0002" and status["jobs"]["completed"] == 3

    again = pow_mcp(store_settings, "db", "import", str(file))  # the schema is there now
    assert again.returncode == 0, again.stderr
    assert "created" not in again.stdout and "imported 0 jobs" in again.stdout
    assert "skipped 3 already in the store" in again.stderr


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"], indirect=True)
def test_db_import_of_a_bad_file_into_a_new_database_changes_nothing(
    kind: str, store_settings: StoreSettings, tmp_path: Path
) -> None:
    not_json = tmp_path / "not-json.json"
    not_json.write_text('{"pow_1_x": {"status": "completed"')
    a_list = tmp_path / "list.json"
    a_list.write_text("[1, 2]")
    no_jobs = tmp_path / "no-jobs.json"
    no_jobs.write_text('{"a": 1, "b": "two"}')
    bad = {
        tmp_path / "missing.json": "No such file",
        tmp_path: "Is a directory",
        not_json: "not valid JSON",
        a_list: "not an object",
        no_jobs: "no value is a job record",
    }
    for file, reason in bad.items():
        done = pow_mcp(store_settings, "db", "import", str(file))
        assert done.returncode == 1, done.stdout + done.stderr
        assert done.stderr.splitlines() == [done.stderr.strip()]  # one line
        assert done.stderr.startswith("pow-mcp: ") and str(file) in done.stderr
        assert reason in done.stderr and "Traceback" not in done.stderr
        assert done.stdout == ""
        assert _tables(store_settings) == [], file
    if kind == "sqlite":
        assert not (store_settings.data_dir / "jobs.db").exists()


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"], indirect=True)
def test_db_import_into_an_older_schema_asks_for_db_migrate(
    kind: str, store_settings: StoreSettings, tmp_path: Path
) -> None:
    _first_schema(store_settings, make_record(JobStatus.COMPLETED))
    file = _jobs_file(tmp_path / "export")

    refused = pow_mcp(store_settings, "db", "import", str(file))
    assert refused.returncode == 1
    lines = refused.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("pow-mcp: ")
    assert "schema 0001" in lines[0] and "`pow-mcp db migrate`" in lines[0]
    assert _revision(store_settings) == "0001" and _job_rows(store_settings) == 1

    assert pow_mcp(store_settings, "db", "migrate").returncode == 0
    imported = pow_mcp(store_settings, "db", "import", str(file))
    assert imported.returncode == 0, imported.stderr
    assert "created" not in imported.stdout and "imported 3 jobs" in imported.stdout
    assert _revision(store_settings) == "0002" and _job_rows(store_settings) == 4


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"], indirect=True)
def test_the_migrations_build_the_schema_the_code_declares(
    kind: str, store_settings: StoreSettings
) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext
    from sqlalchemy import create_engine

    from pow_mcp.store.sql.tables import metadata
    from pow_mcp.store.url import parse_database_url

    assert pow_mcp(store_settings, "db", "migrate").returncode == 0
    url = parse_database_url(store_settings.database_url or "", store_settings.data_dir)
    engine = create_engine(url.sqlalchemy_url)
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": False})
            differences = compare_metadata(context, metadata)
    finally:
        engine.dispose()
    assert [d for d in differences if "alembic_version" not in str(d)] == []
