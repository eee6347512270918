"""`pow-mcp db`: the configured job store without a server: status, migrate, reset,
export, import. Safe while servers run on the same store."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio

from pow_mcp.server.cli.common import ERROR, OK, USAGE, store_config, store_flags
from pow_mcp.server.config import Config
from pow_mcp.store import JobStatus, JobStore, StoreError, connect, migrate
from pow_mcp.store.transfer import export_jobs, import_records, read_jobs_file
from pow_mcp.store.url import parse_database_url


def add_parser(sub: Any) -> None:
    db = sub.add_parser(
        "db",
        help="inspect and maintain the job store (JOBS_DATABASE_URL, or the JSON file)",
        description="Act on the configured job store without a server. Exit status: 0 "
        "done, 1 an error (a refused reset), 2 a usage error.",
    )
    actions = db.add_subparsers(dest="db_command", metavar="ACTION", required=True)
    flags = [store_flags()]
    status = actions.add_parser(
        "status", parents=flags, help="backend, location, schema, jobs per status"
    )
    status.add_argument("--json", action="store_true", help="print JSON")
    actions.add_parser("migrate", parents=flags, help="bring a database's schema up to date")
    reset = actions.add_parser("reset", parents=flags, help="delete every job (needs --force)")
    reset.add_argument("--force", action="store_true", help="really delete every job")
    export = actions.add_parser(
        "export", parents=flags, help="write every job to FILE (jobs.json format)"
    )
    export.add_argument("file", type=Path)
    imp = actions.add_parser(
        "import",
        parents=flags,
        help="add the jobs of FILE (jobs.json format); a database without a schema gets one",
    )
    imp.add_argument("file", type=Path)


def run(args: argparse.Namespace, config: Config | None = None) -> int:
    """Run `pow-mcp db ACTION`; returns the exit status."""
    config = store_config(args, config)
    if config is None:
        return USAGE
    actions: dict[str, Callable[[argparse.Namespace, Config], Awaitable[int]]] = {
        "status": _status,
        "migrate": _migrate,
        "reset": _reset,
        "export": _export,
        "import": _import,
    }
    try:
        return anyio.run(actions[args.db_command], args, config)
    except StoreError as exc:
        print(f"pow-mcp: {exc}", file=sys.stderr)
        return ERROR


def describe(config: Config) -> tuple[str, str]:
    """(backend, location), never with a password."""
    settings = config.store
    if not settings.persist:
        return "memory", "nowhere (PERSIST_JOBS=false: a server keeps jobs in memory only)"
    if settings.database_url is None:
        return "json", str(config.jobs_file)
    url = parse_database_url(settings.database_url, settings.data_dir)
    return url.dialect, str(url.path) if url.path is not None else url.display


async def _with_store(config: Config, action: Callable[[JobStore], Awaitable[int]]) -> int:
    store = await connect(config.store, serving=False)
    try:
        return await action(store)
    finally:
        await store.close()


async def _status(args: argparse.Namespace, config: Config) -> int:
    backend, location = describe(config)
    info: dict[str, Any] = {"backend": backend, "location": location}
    try:
        store = await connect(config.store, serving=False)
    except StoreError as exc:
        info["error"] = str(exc)
        _print_status(info, args.json)
        return ERROR
    try:
        info["schema"] = getattr(store, "schema_version", None) or "jobs.json"
        counts = await store.status_counts()
    finally:
        await store.close()
    info["jobs"] = {status.value: counts[status] for status in JobStatus}
    info["total"] = sum(counts.values())
    _print_status(info, args.json)
    return OK


def _print_status(info: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print(json.dumps(info, indent=2))
        return
    print(f"backend:  {info['backend']}")
    print(f"location: {info['location']}")
    if "error" in info:
        print(f"error:    {info['error']}")
        return
    print(f"schema:   {info['schema']}")
    jobs = ", ".join(f"{status} {count}" for status, count in info["jobs"].items())
    print(f"jobs:     {info['total']} ({jobs})")


async def _migrate(args: argparse.Namespace, config: Config) -> int:
    before, after = await migrate(config.store)
    backend, location = describe(config)
    if after is None:
        print(f"{backend} store at {location}: no schema to migrate")
    elif before == after:
        print(f"{location}: schema {after} is current; nothing to do")
    else:
        print(f"{location}: migrated from {before or '(empty)'} to {after}")
    return OK


async def _reset(args: argparse.Namespace, config: Config) -> int:
    _, location = describe(config)
    if not args.force:
        print(
            f"pow-mcp: refusing to delete every job in {location} without --force",
            file=sys.stderr,
        )
        return ERROR

    async def reset(store: JobStore) -> int:
        print(f"deleted {await store.delete_all()} jobs from {location}")
        return OK

    return await _with_store(config, reset)


async def _export(args: argparse.Namespace, config: Config) -> int:
    async def export(store: JobStore) -> int:
        count = await export_jobs(store, args.file)
        print(f"exported {count} jobs to {args.file}")
        return OK

    return await _with_store(config, export)


async def _import(args: argparse.Namespace, config: Config) -> int:
    # The file first: one that cannot be read or is not a jobs file changes nothing, not
    # even a new database's schema.
    jobs = await read_jobs_file(args.file)
    store = await connect(config.store, serving=False, create_schema=True)
    try:
        if config.store.database_url is not None:
            # SQLAlchemy is imported only where a database is used (each command starts faster).
            from pow_mcp.store.sql.store import SqlJobStore

            if isinstance(store, SqlJobStore) and store.migrated_from is None:  # it had none
                print(f"created the jobs schema {store.schema_version} in {store.location}")
        result = await import_records(store, jobs)
    finally:
        await store.close()
    print(f"imported {result.created} jobs from {args.file}")
    if result.skipped:
        print(f"skipped {len(result.skipped)} already in the store", file=sys.stderr)
    for job_id, reason in result.unreadable.items():
        print(f"skipped {job_id}: not a job record ({reason})", file=sys.stderr)
    return OK
