"""Random damage to the stores' files at start-up.

The JSON jobs file: the store opens, a damaged file is set aside byte for byte (with a
warning naming the copy) and never overwritten, and the store goes on working. A SQLite
file: it opens, or start-up stops with a message naming the file and leaves it exactly as
it was (the SPEC's rule for a file that fails its integrity check).
"""

from __future__ import annotations

import logging
import shutil
import sqlite3
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import anyio
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from pow_mcp.store import (
    JobRecord,
    JobStatus,
    StoreConfigError,
    StoreError,
    StoreSettings,
    open_store,
)
from pow_mcp.store.transfer import all_jobs
from tests.mcp_helpers import call, connect
from tests.store_helpers import finished, make_record

FILES = settings(
    max_examples=settings().max_examples // 4,  # of the profile: ci 25, long 500
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
# One edit: (what, where as a fraction of the file, a byte).
EDIT = st.tuples(
    st.sampled_from(["flip", "insert", "delete", "truncate", "zero"]),
    st.floats(0, 1, exclude_max=True),
    st.integers(0, 255),
)


def damage(data: bytes, edits: list[tuple[str, float, int]]) -> bytes:
    buffer = bytearray(data)
    for what, where, byte in edits:
        at = int(where * len(buffer)) if buffer else 0
        if what == "flip" and buffer:
            buffer[at] ^= byte or 1
        elif what == "insert":
            buffer[at:at] = bytes([byte])
        elif what == "delete" and buffer:
            del buffer[at]
        elif what == "truncate":
            del buffer[at:]
        elif what == "zero":
            buffer[at : at + byte] = bytes(len(buffer[at : at + byte]))
    return bytes(buffer)


@contextmanager
def warnings_logged() -> Iterator[list[str]]:
    """The store's warnings while the block runs (caplog is per test, not per example)."""
    lines: list[str] = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = lambda record: lines.append(record.getMessage())  # type: ignore[method-assign]
    logger = logging.getLogger("pow_mcp.store")
    logger.addHandler(handler)
    try:
        yield lines
    finally:
        logger.removeHandler(handler)


def copies_of(data: bytes, directory: Path) -> list[Path]:
    return [p for p in directory.iterdir() if p.is_file() and p.read_bytes() == data]


def some_jobs(instance: str) -> list[JobRecord]:
    queued = make_record(owner=instance, tags=["fuzz"])
    paused = make_record(JobStatus.PAUSED, owner=instance)
    done = finished(make_record(JobStatus.RUNNING, owner=instance))
    return [queued, paused, done]


async def write_store(settings: StoreSettings) -> None:
    async with open_store(settings) as store:
        await store.create(some_jobs(store.instance_id))


async def still_works(settings: StoreSettings) -> None:
    """A job created now survives a reopen, beside whatever was recovered."""
    async with open_store(settings) as store:
        before = {r.job_id for r in await all_jobs(store)}
        fresh = make_record(owner=store.instance_id)
        await store.create([fresh])
    async with open_store(settings) as store:
        after = {r.job_id for r in await all_jobs(store)}
    assert after == before | {fresh.job_id}


@contextmanager
def damaged_store(
    edits: list[tuple[str, float, int]], name: str, url: str | None = None
) -> Iterator[tuple[StoreSettings, Path, bytes]]:
    """A store with a few jobs, in a directory of its own, whose file `name` then took
    `edits`: its settings, the file and the damaged bytes."""
    data_dir = Path(tempfile.mkdtemp())
    try:
        settings = StoreSettings(data_dir, database_url=url)
        anyio.run(write_store, settings)
        path = data_dir / name
        data = damage(path.read_bytes(), edits)
        path.write_bytes(data)
        yield settings, path, data
    finally:
        shutil.rmtree(data_dir)


@FILES
@given(edits=st.lists(EDIT, min_size=1, max_size=4))
def test_a_damaged_jobs_file_is_set_aside_and_never_overwritten(
    edits: list[tuple[str, float, int]],
) -> None:
    with damaged_store(edits, "jobs.json") as (settings, path, damaged):
        with warnings_logged() as warned:
            anyio.run(still_works, settings)
        assert copies_of(damaged, path.parent), "the damaged file was overwritten, with no copy"
        asides = sorted(p.name for p in path.parent.glob("jobs.json.corrupt-*"))
        for name in asides:  # each copy set aside was named in a warning
            assert any(name in line for line in warned), (name, warned)


@FILES
@given(edits=st.lists(EDIT, min_size=1, max_size=4))
# Found by this test: damaged schema text made SQLite's error message undecodable, and the
# sqlite3 module raised UnicodeDecodeError instead of a refusal.
@example(edits=[("flip", 0.053049728140762704, 128)])
def test_a_damaged_sqlite_file_opens_or_is_refused_untouched(
    edits: list[tuple[str, float, int]],
) -> None:
    with damaged_store(edits, "jobs.db", "sqlite:///jobs.db") as (settings, path, damaged):
        try:
            anyio.run(read_everything, settings)
        except StoreConfigError as exc:
            assert str(path) in str(exc)
            assert path.read_bytes() == damaged, "a refused file was changed"


async def read_everything(settings: StoreSettings) -> None:
    """Open and read every job; a read may fail only as the store's own error."""
    async with open_store(settings) as store:
        try:
            for record in await all_jobs(store):
                await store.get(record.job_id)
        except StoreError as exc:
            assert "jobs database" in str(exc), exc


@pytest.mark.parametrize(
    "damaged",
    [b"\x00" * 64, b'{"pow_1_x": {"status": "running"'],
)
async def test_the_server_starts_on_a_damaged_jobs_file(tmp_path: Path, damaged: bytes) -> None:
    (tmp_path / "jobs.json").write_bytes(damaged)
    async with connect(tmp_path) as client:
        job = await call(client, "start_proof_of_work", prefix="after-", difficulty=1)
        done = await call(client, "wait_for_job", job_id=job["job_id"], timeout_seconds=60)
    assert done["status"] == "completed"
    assert copies_of(damaged, tmp_path), "the damaged file is gone"


async def test_a_sqlite_row_with_damaged_json_costs_only_its_own_job(tmp_path: Path) -> None:
    # The fuzzing's find: one flipped byte inside a row's JSON passed the integrity check,
    # then every query that read the row failed with a bare JSONDecodeError.
    settings = StoreSettings(tmp_path, database_url="sqlite:///jobs.db")
    async with open_store(settings) as store:
        good, bad = make_record(owner=store.instance_id), make_record(owner=store.instance_id)
        await store.create([good, bad])
    with sqlite3.connect(tmp_path / "jobs.db") as db:
        db.execute("UPDATE jobs SET record = ? WHERE id = ?", ('{"job_data": {', bad.job_id))
    with warnings_logged() as warned:
        async with open_store(settings) as store:
            assert [r.job_id for r in await all_jobs(store)] == [good.job_id]
            with pytest.raises(StoreError, match=f"job {bad.job_id}: its stored record"):
                await store.get(bad.job_id)
    assert any(bad.job_id in line and "skipped" in line for line in warned), warned
    with sqlite3.connect(tmp_path / "jobs.db") as db:  # left as it was, for inspection
        (kept,) = db.execute("SELECT record FROM jobs WHERE id = ?", (bad.job_id,)).fetchone()
    assert kept == '{"job_data": {'
