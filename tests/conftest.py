"""Fixtures shared by the test modules: a real PostgreSQL server, store settings per backend."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import settings

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

# `make test` runs the suite in parallel worker processes (pytest-xdist, `--dist loadgroup`),
# then the TIMING tests alone:
# - TIMING (the `timing` marker): tests that read how much CPU hashing processes use, or
#   bound in seconds how long hashing goes on. Beside three other workers on two cores a
#   pause measured 1.2 s and a hashing Dask worker 0.1 of a CPU, so they run after the rest,
#   with nothing else of the suite beside them, one test file per core.
# The tests of one group run on one worker, one after another (xdist hands out the groups
# first, as its largest units of work):
# - BROWSER: the browser tests, which share one Chromium (a module fixture).
# - COMPILE: the kernel builds, each a CPU's worth for many seconds: one at a time.
TIMING = pytest.mark.timing
BROWSER = pytest.mark.xdist_group("browser")
COMPILE = pytest.mark.xdist_group("compile")


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
