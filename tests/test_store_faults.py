"""Faults on every persistent store: a full disk (ENOSPC), no file descriptors left
(EMFILE), a database that goes away for a few seconds. An operation whose write fails
raises StoreWriteError and leaves no trace, now or later; once the fault is gone, the
store works again."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path

import pytest

from pow_mcp.store import (
    JobQuery,
    JobStatus,
    JobStore,
    StoreError,
    StoreSettings,
    StoreWriteError,
    open_store,
    utc_now,
)
from tests.conftest import settings_for
from tests.faults import fill, out_of_file_descriptors, small_disk
from tests.pg_server import PostgresServer
from tests.store_helpers import make_record


async def attempt(operation: Callable[[], Awaitable[object]]) -> bool:
    """Run an operation that may fail for the fault; True if it worked."""
    try:
        await operation()
    except StoreWriteError:
        return False
    return True


async def faulty_operations(
    store: JobStore, fault_begins: Callable[[], object], fault_ends: Callable[[], object]
) -> None:
    """Create, finish, cancel and clean up while the fault lasts, then check that each one
    happened if it said so and left no trace if it failed."""
    old = make_record(JobStatus.COMPLETED, owner=store.instance_id)
    old.completed_at = utc_now() - timedelta(hours=2)
    running = make_record(JobStatus.RUNNING, owner=store.instance_id)
    other = make_record(JobStatus.RUNNING, owner=store.instance_id)
    await store.create([old, running, other])
    refused = [make_record(owner=store.instance_id) for _ in range(300)]  # a big write
    fault_begins()
    created = await attempt(lambda: store.create(refused))
    finished = await attempt(
        lambda: store.finish(running.model_copy(update={"status": JobStatus.COMPLETED}))
    )
    cancelled = await attempt(lambda: store.cancel(other.job_id))
    cleaned = await attempt(lambda: store.delete_finished(3600))
    fault_ends()

    await store.create([make_record(owner=store.instance_id)])  # works again
    _, total = await store.find(JobQuery(limit=1))
    assert (await store.get(refused[0].job_id) is not None) is created
    assert total == 3 + 1 + (300 if created else 0) - (1 if cleaned else 0)
    after = await store.get(running.job_id)
    assert after is not None
    assert after.status is (JobStatus.COMPLETED if finished else JobStatus.RUNNING)
    other_now = await store.get(other.job_id)
    assert other_now is not None
    assert other_now.status is (JobStatus.CANCELLED if cancelled else JobStatus.RUNNING)
    assert (await store.get(old.job_id) is None) is cleaned
    assert not created, "a 300-job write on a full disk should have failed"


@pytest.mark.parametrize("kind", ["json", "sqlite"], indirect=True)
async def test_a_full_disk(kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    with small_disk(tmp_path / "disk") as disk:
        async with open_store(settings_for(kind, disk / "data", request)) as store:
            ballast = disk / "ballast"
            await faulty_operations(store, lambda: fill(disk), ballast.unlink)


@pytest.mark.parametrize("kind", ["json", "sqlite", "postgresql"], indirect=True)
async def test_no_file_descriptors_left(store_settings: StoreSettings, kind: str) -> None:
    async with open_store(store_settings) as store:
        old = make_record(JobStatus.COMPLETED, owner=store.instance_id)
        old.completed_at = utc_now() - timedelta(hours=2)
        await store.create([old])
        refused = make_record(owner=store.instance_id)
        with out_of_file_descriptors():
            created = await attempt(lambda: store.create([refused]))
            cleaned = await attempt(lambda: store.delete_finished(0))
        await store.create([make_record(owner=store.instance_id)])
        assert (await store.get(refused.job_id) is not None) is created
        assert (await store.get(old.job_id) is None) is cleaned
        if kind == "json":  # every JSON write opens files; a database keeps its connection
            assert not created and not cleaned


@pytest.fixture
def own_postgres() -> PostgresServer:
    server = PostgresServer()
    server.start()
    return server


async def test_a_database_that_goes_away_for_a_few_seconds(
    own_postgres: PostgresServer, tmp_path: Path
) -> None:
    server = own_postgres
    try:
        settings = StoreSettings(tmp_path, database_url=server.url(server.create_database()))
        async with open_store(settings) as store:
            await faulty_operations(store, server.stop, server.start)
            server.stop()
            with pytest.raises(StoreError, match="jobs database") as caught:
                await store.get("pow_1_x")
            assert server.password not in str(caught.value)
            server.start()
            assert await store.get("pow_1_x") is None
    finally:
        server.cleanup()
