"""Faults on every persistent store: a full disk (ENOSPC), no file descriptors left
(EMFILE), a database that goes away for a few seconds. An operation whose write fails
raises StoreWriteError and leaves no trace, now or later; once the fault is gone, the
store works again."""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable, Iterator
from datetime import timedelta
from pathlib import Path

import anyio
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
def own_postgres() -> Iterator[PostgresServer]:
    """A PostgreSQL server of the test's own, to stop and start."""
    server = PostgresServer()
    server.start()
    try:
        yield server
    finally:
        server.cleanup()


async def test_a_database_that_goes_away_for_a_few_seconds(
    own_postgres: PostgresServer, tmp_path: Path
) -> None:
    server = own_postgres
    settings = StoreSettings(tmp_path, database_url=server.url(server.create_database()))
    async with open_store(settings) as store:
        await faulty_operations(store, server.stop, server.start)
        server.stop()
        with pytest.raises(StoreError, match="jobs database") as caught:
            await store.get("pow_1_x")
        assert server.password not in str(caught.value)
        server.start()
        assert await store.get("pow_1_x") is None


# -- the log while the database is away -------------------------------------------------------

LEASE = "could not renew this instance's lease"
WATCH = "lost the notification connection"
BACK = "database reachable again after"
COUNTED = re.compile(r"\((\d+) more times? in 10 s\)$")


class ManualClock:
    """The outage log's clock, moved by the test: its 10 s window passes when the test says."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_a_stopped_database_is_logged_once_per_cause_per_window_and_its_return(
    own_postgres: PostgresServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    server = own_postgres
    caplog.set_level(logging.INFO, logger="pow_mcp")
    url = server.url(server.create_database())
    settings = StoreSettings(tmp_path, database_url=url, lease_seconds=0.6)  # renews every 0.1 s

    def lines(needle: str) -> list[str]:
        return [r.getMessage() for r in caplog.records if needle in r.getMessage()]

    async def until(condition: Callable[[], bool]) -> None:
        # While PostgreSQL is away the store's watch retries every second and wakes waiters
        # each time; once it is back, its first LISTEN wakes them too.
        with anyio.fail_after(60):
            while not condition():
                await store.wait_for_change()

    async with open_store(settings) as store:
        clock = store.outage.clock = ManualClock()
        server.stop()
        await until(lambda: bool(lines(LEASE) and lines(WATCH)))
        for _ in range(2):  # two more retries of the watch, and many of the lease: held back
            await store.wait_for_change()
        assert len(lines(LEASE)) == 1 and len(lines(WATCH)) == 1
        assert not any(COUNTED.search(line) for line in lines(LEASE) + lines(WATCH))

        clock.now += 10  # the window has passed: the next failure of each cause speaks
        await until(lambda: len(lines(LEASE)) >= 2 and len(lines(WATCH)) >= 2)
        for needle in (LEASE, WATCH):
            first, second = lines(needle)
            assert COUNTED.search(first) is None
            counted = COUNTED.search(second)
            assert counted is not None and int(counted[1]) >= 1, second

        clock.now += 15  # 25 s since the first failure: each cause speaks once more, then
        await until(lambda: len(lines(LEASE)) >= 3 and len(lines(WATCH)) >= 3)
        for _ in range(2):  # its repeats are held back until the database answers
            await store.wait_for_change()
        server.start()
        await until(lambda: bool(lines(BACK)))
        (back,) = [r for r in caplog.records if BACK in r.getMessage()]
        assert back.levelno == logging.INFO
        assert re.fullmatch(
            rf"database reachable again after 25 s \({re.escape(store.location)}\)"
            r"; \d+ repeated warnings were held back",
            back.getMessage(),
        ), back.getMessage()
        assert await store.get("pow_1_x") is None  # and it works

        # Once it is back, the next outage is told at once: the window starts afresh.
        before = len(lines(LEASE))
        server.stop()
        await until(lambda: len(lines(LEASE)) > before)
        server.start()
        await until(lambda: len(lines(BACK)) == 2)
    assert server.password not in caplog.text
