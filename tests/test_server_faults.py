"""A proof found while the store cannot be written is kept and saved once it can: the real
server, a disk that fills up (JSON file, SQLite) and a PostgreSQL server that stops."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client

from tests.chain import Chain
from tests.faults import fill, small_disk
from tests.mcp_helpers import call, call_error, connect
from tests.pg_server import PostgresServer

START = {
    "action_type": "struct_build_complete",
    "entity_id": "5-42",
    "block_start": 1000,
    "difficulty_range": 10,
}


async def status_of(client: Client, job_id: str) -> dict[str, Any]:
    return await call(client, "query_proof_of_work_status", job_id=job_id)


async def a_proof_survives(
    client: Client,
    chain: Chain,
    fault_begins: Callable[[], object],
    fault_ends: Callable[[], object],
) -> None:
    """Hash a job at an impossible difficulty, break the store, let blocks pass so the best
    hash becomes a proof: the job stays running with a note until the store works again."""
    chain.height = 1002  # age 2: difficulty 46, nothing will meet it
    job = await call(client, "start_proof_of_work", **START)
    job_id = job["job_id"]
    with anyio.fail_after(30):
        while (await status_of(client, job_id))["status"] != "running":
            await call(client, "wait_for_job", job_id=job_id, timeout_seconds=0.2)
    fault_begins()
    chain.first, chain.armed = 1003, True  # blocks pass: the difficulty falls to 1
    with anyio.fail_after(60):
        while not (await status_of(client, job_id))["progress"].get("note"):
            await call(client, "wait_for_job", job_id=job_id, timeout_seconds=0.2)
    stuck = await status_of(client, job_id)
    assert stuck["status"] == "running" and "completed" in stuck["progress"]["note"]
    refused = await call_error(client, "start_proof_of_work", prefix="x-", difficulty=1)
    assert "not started" in refused
    fault_ends()
    with anyio.fail_after(60):
        done = await call(client, "wait_for_job", job_id=job_id, timeout_seconds=50)
    assert done["status"] == "completed", done
    proof = done["result"]["proof_of_work"]
    digest = hashlib.sha256(f"5-42BUILD1000NONCE{proof['nonce']}".encode()).hexdigest()
    assert digest == proof["hash"] and done["progress"].get("note") is None
    listed = await call(client, "list_jobs")
    assert listed["total"] == 1  # the refused start left nothing behind


ENV = {"BLOCK_TIME_SECONDS": "0.2", "TARGET_DIFFICULTY_START": "64"}


@pytest.mark.parametrize("url", [None, "sqlite:///jobs.db"], ids=["json", "sqlite"])
async def test_a_proof_found_on_a_full_disk_is_saved_later(
    tmp_path: Path, chain: tuple[Chain, str], url: str | None
) -> None:
    state, chain_url = chain
    env = {**ENV, "BLOCK_HEIGHT_URL": chain_url}
    if url:
        env["JOBS_DATABASE_URL"] = url
    with small_disk(tmp_path / "disk") as disk:
        ballast = disk / "ballast"
        async with connect(disk / "data", **env) as client:
            await a_proof_survives(client, state, lambda: fill(disk), ballast.unlink)


async def test_a_proof_found_while_postgresql_is_down_is_saved_later(
    tmp_path: Path, chain: tuple[Chain, str]
) -> None:
    state, chain_url = chain
    server = PostgresServer()
    server.start()
    try:
        url = server.url(server.create_database())
        env = {**ENV, "BLOCK_HEIGHT_URL": chain_url, "JOBS_DATABASE_URL": url}
        async with connect(tmp_path, **env) as client:
            await a_proof_survives(client, state, server.stop, server.start)
    finally:
        server.cleanup()
