"""Export and import jobs in the `jobs.json` format, between any two stores.

An export is exactly what the JSON store writes (one record per line, atomic, 0600), so
it can also serve as a JSON store's file. An import reads the same lenient way the JSON
store does (a structs-mcp `jobs.json` included) and creates the jobs as they are: their
statuses, owners and history. Unfinished jobs whose owner does not run come back under
the recovery policy at the next server start.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import anyio

from pow_mcp.store.api import JobExistsError, JobStore, StoreError
from pow_mcp.store.jsonfile.codec import UnreadableFile, encode_line, parse, render
from pow_mcp.store.jsonfile.file import write_atomic
from pow_mcp.store.query import JobQuery
from pow_mcp.store.record import JobRecord

log = logging.getLogger(__name__)

PAGE = 1000


@dataclass(frozen=True)
class Imported:
    created: int
    skipped: list[str]  # ids that already exist in the store
    unreadable: dict[str, str]  # ids in the file that are not job records, and why


async def export_jobs(store: JobStore, path: Path) -> int:
    """Write every job of `store` to `path` (replaced atomically); returns how many."""
    records = await all_jobs(store)
    data = render(encode_line(r.job_id, r) for r in records)
    await anyio.to_thread.run_sync(lambda: write_atomic(path, data, backup=None))
    return len(records)


async def all_jobs(store: JobStore) -> list[JobRecord]:
    """Every job, oldest first."""
    records: list[JobRecord] = []
    while True:
        page, total = await store.find(JobQuery(descending=False, limit=PAGE, offset=len(records)))
        records += page
        if not page or len(records) >= total:
            return records


async def import_jobs(store: JobStore, path: Path) -> Imported:
    """Create the jobs of a `jobs.json`-format file that the store does not have yet."""
    return await import_records(store, await read_jobs_file(path))


@dataclass(frozen=True)
class JobsFile:
    path: Path
    records: list[JobRecord]
    unreadable: dict[str, str]  # ids in the file that are not job records, and why


async def read_jobs_file(path: Path) -> JobsFile:
    """The job records of a `jobs.json`-format file; `StoreError` saying why if it cannot be
    read or is not a jobs file at all. Touches no store: read a file before changing one."""
    try:
        data = await anyio.to_thread.run_sync(path.read_bytes)
    except OSError as exc:
        raise StoreError(f"cannot read {path}: {exc.strerror}") from None
    try:
        parsed = parse(data)
    except UnreadableFile as exc:
        raise StoreError(f"{path} is not a jobs file: {exc}") from None
    contents = parsed.contents
    records = [r for r in (contents.record(i) for i in contents.entries) if r is not None]
    return JobsFile(path, records, parsed.bad)


async def import_records(store: JobStore, jobs: JobsFile) -> Imported:
    """Create the jobs read from a file that the store does not have yet."""
    records = jobs.records
    existing = await store.get_many([r.job_id for r in records])
    fresh = [r for r in records if r.job_id not in existing]
    for start in range(0, len(fresh), PAGE):
        try:
            await store.create(fresh[start : start + PAGE])
        except JobExistsError:  # created meanwhile by someone else: one by one, then
            for record in fresh[start : start + PAGE]:
                try:
                    await store.create([record])
                except JobExistsError:
                    existing[record.job_id] = record
    created = len(records) - len(existing)
    log.info("imported %d jobs from %s (%d already there)", created, jobs.path, len(existing))
    return Imported(created, sorted(existing), jobs.unreadable)
