"""Fixtures shared by the test modules: a real PostgreSQL server, store settings per backend."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import settings
from xdist.scheduler import LoadScopeScheduling

from pow_mcp.store import StoreSettings
from tests.chain import Chain, serving_chain
from tests.pg_server import PostgresServer

# Hypothesis budgets: `ci` (the default) fits `make test`; `--hypothesis-profile=long` runs the
# model-checked store and the fuzz tests much longer (`make test-long`, or by hand). Tests
# that set their own `max_examples` keep it under either.
settings.register_profile("ci", max_examples=100, stateful_step_count=20)
settings.register_profile("long", max_examples=2000, stateful_step_count=60)
settings.load_profile("ci")  # the pytest plugin loads --hypothesis-profile after this

STORE_KINDS = ["memory", "json", "sqlite", "postgresql"]
PERSISTENT_KINDS = ["json", "sqlite", "postgresql"]

# `make test` runs the suite in parallel worker processes (pytest-xdist, `--dist load`), then
# the TIMING tests:
# - TIMING (the `timing` marker): tests that read how much CPU hashing processes use, or
#   bound in seconds how long hashing goes on. Beside three other workers on two cores a
#   pause measured 1.2 s and a hashing Dask worker 0.1 of a CPU, so they run after the rest,
#   with nothing else of the suite beside them, one test file per core (`--dist loadfile`).
TIMING = pytest.mark.timing

# Files whose tests run on one worker, one after another, so that their module fixtures are
# set up once: one Chromium for the browser tests, one kernel build per compiler. (xdist's
# own `xdist_group` marker does nothing under pytest 9: xdist 3.8 renames the test's
# `_nodeid`, which pytest 9 no longer reads.)
ONE_WORKER_FILES = {"test_view_browser.py", "test_kernel_build.py"}

# xdist hands out its work in collection order; these files take longest (the first two in
# the timing run), so they go first, and a run does not end with one of them alone on a worker.
LONGEST_FILES = [
    "test_server_shared.py",
    "test_dask_pool.py",
    "test_view_browser.py",
    "test_kernel_build.py",
    "test_cli_jobs.py",
    "test_server_tasks.py",
    "test_server_control.py",
    "test_store_model.py",
]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    first = {name: rank for rank, name in enumerate(LONGEST_FILES)}
    items.sort(key=lambda item: first.get(item.path.name, len(first)))  # stable: else as found


class _LoadWithOneWorkerFiles(LoadScopeScheduling):
    """xdist's `load` (each test to the next free worker), but each of ONE_WORKER_FILES as
    one unit of work."""

    def _split_scope(self, nodeid: str) -> str:
        path = nodeid.split("::", 1)[0]
        return path if path.rsplit("/", 1)[-1] in ONE_WORKER_FILES else nodeid


def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    if config.getvalue("dist") == "load":
        return _LoadWithOneWorkerFiles(config, log)
    return None  # xdist's own


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """One PostgreSQL server for the test process (each xdist worker starts its own), each
    test with a database of its own on it."""
    server = PostgresServer()
    server.start()
    try:
        yield server
    finally:
        server.cleanup()


@pytest.fixture
def pg_url(postgres: PostgresServer) -> str:
    """A fresh, empty database on the session's server."""
    return postgres.url(postgres.create_database())


@pytest.fixture
def chain() -> Iterator[tuple[Chain, str]]:
    """A local block-height server (see tests/chain.py) and its URL."""
    with serving_chain() as served:
        yield served


@pytest.fixture
def kind(request: pytest.FixtureRequest) -> str:
    """The store backend under test: parametrize with `indirect=True`."""
    value: str = request.param
    return value


@pytest.fixture
def store_settings(kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> StoreSettings:
    """Settings for the backend named by the test's `kind` parameter."""
    return settings_for(kind, tmp_path / "data", request)


def settings_for(
    kind: str, data_dir: Path, request: pytest.FixtureRequest, **options: object
) -> StoreSettings:
    url = None
    if kind == "sqlite":
        url = "sqlite:///jobs.db"
    elif kind == "postgresql":
        url = request.getfixturevalue("pg_url")
    return StoreSettings(
        data_dir,
        persist=kind != "memory",
        database_url=url,
        **options,  # type: ignore[arg-type]
    )


@pytest.fixture(params=PERSISTENT_KINDS)
def store_env(request: pytest.FixtureRequest) -> dict[str, str]:
    """Server environment for each persistent store, for tests of several server processes."""
    env = {"JOBS_LEASE_SECONDS": "1.5"}
    if request.param == "sqlite":
        env["JOBS_DATABASE_URL"] = "sqlite:///jobs.db"
    elif request.param == "postgresql":
        env["JOBS_DATABASE_URL"] = request.getfixturevalue("pg_url")
    return env
