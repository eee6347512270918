"""HTTP that is safe off loopback: bearer tokens, principals, the body limit, the Host
check of a server bound to every interface, and refusing to serve open by mistake."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from tests.mcp_helpers import ROOT, call, call_error, free_port, http_server, server_env

ALICE, BOB, ADMIN = "alice-token-0123456789", "bob-token-0123456789ab", "admin-token-0123456789"
PING = {"jsonrpc": "2.0", "id": 1, "method": "ping"}
ACCEPT = {"Accept": "application/json, text/event-stream"}


@contextlib.asynccontextmanager
async def client_with(url: str, token: str) -> AsyncIterator[Client]:
    headers = {"Authorization": f"Bearer {token}"}
    async with (
        httpx2.AsyncClient(headers=headers, timeout=60) as http,
        Client(streamable_http_client(url, http_client=http), mode="legacy") as client,
    ):
        yield client


@pytest.fixture
def token_file(tmp_path: Path) -> Path:
    path = tmp_path / "tokens"
    path.write_text(f"# name:token\nalice:{ALICE}\nbob:{BOB}\nadmin:{ADMIN}\n")
    return path


def test_no_token_or_a_wrong_one_gets_401_with_a_challenge(tmp_path: Path) -> None:
    with http_server(tmp_path / "data", POW_MCP_TOKEN=ALICE) as url:
        missing = httpx2.post(url, json=PING, headers=ACCEPT)
        assert missing.status_code == 401
        assert missing.headers["www-authenticate"] == 'Bearer realm="pow-mcp"'
        wrong = httpx2.post(url, json=PING, headers={**ACCEPT, "Authorization": f"Bearer {BOB}"})
        assert wrong.status_code == 401
        assert 'error="invalid_token"' in wrong.headers["www-authenticate"]
        basic = httpx2.post(url, json=PING, headers={**ACCEPT, "Authorization": "Basic eDp5"})
        assert basic.status_code == 401
        big = httpx2.post(
            url,
            content=b"{" + b" " * (1 << 20) + b"}",
            headers={
                **ACCEPT,
                "Authorization": f"Bearer {ALICE}",
                "Content-Type": "application/json",
            },
        )
        assert big.status_code == 413
    assert (
        not (tmp_path / "data" / "jobs.json").exists()
        or "pow_" not in (tmp_path / "data" / "jobs.json").read_text()
    )


async def test_a_principal_sees_and_acts_on_its_own_jobs_only(
    tmp_path: Path, token_file: Path
) -> None:
    env = {"POW_MAX_ACTIVE_JOBS": "2"}
    with http_server(tmp_path / "data", "--token-file", str(token_file), **env) as url:
        async with (
            client_with(url, ALICE) as alice,
            client_with(url, BOB) as bob,
            client_with(url, ADMIN) as admin,
        ):
            mine = await call(alice, "start_proof_of_work", prefix="alice-", difficulty=12)
            done = await call(alice, "start_proof_of_work", prefix="alice2-", difficulty=1)
            await call(alice, "wait_for_job", job_id=done["job_id"])
            theirs = await call(bob, "start_proof_of_work", prefix="bob-", difficulty=1)
            await call(bob, "wait_for_job", job_id=theirs["job_id"])

            for tool in ("query_proof_of_work_status", "cancel_job", "pause_job"):
                error = await call_error(bob, tool, job_id=mine["job_id"])
                assert "no job with id" in error
            assert [j["job_id"] for j in (await call(bob, "list_jobs"))["jobs"]] == [
                theirs["job_id"]
            ]
            removed = await call(bob, "cleanup_jobs", max_age_seconds=0)
            assert removed["job_ids"] == [theirs["job_id"]]  # alice's finished job stays

            seen = {j["job_id"] for j in (await call(admin, "list_jobs"))["jobs"]}
            assert seen == {mine["job_id"], done["job_id"]}
            record = await call(alice, "query_proof_of_work_status", job_id=mine["job_id"])
            assert record["principal"] == "alice" and record["status"] in ("queued", "running")

            await call(alice, "start_proof_of_work", prefix="alice3-", difficulty=12)
            refused = await call_error(alice, "start_proof_of_work", prefix="x-", difficulty=12)
            assert "POW_MAX_ACTIVE_JOBS" in refused and "at most 2" in refused
            assert (await call(bob, "start_proof_of_work", prefix="b2-", difficulty=1))["job_id"]
            cancelled = await call(admin, "cancel_job", job_id=mine["job_id"])
            assert cancelled["cancelled"] is True


def test_every_interface_needs_a_token_or_says_it_is_open(tmp_path: Path) -> None:
    port = str(free_port())
    command = [
        sys.executable,
        "-m",
        "pow_mcp.server.cli",
        "--transport",
        "http",
        "--host",
        "0.0.0.0",
    ]
    refused = subprocess.run(
        [*command, "--port", port],
        cwd=ROOT,
        env=server_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert refused.returncode == 2
    assert "POW_MCP_TOKEN" in refused.stderr and "--insecure-no-auth" in refused.stderr
    assert "Traceback" not in refused.stderr and not (tmp_path / "jobs.json").exists()


def test_a_server_on_every_interface_answers_to_its_own_names(tmp_path: Path) -> None:
    with http_server(
        tmp_path, "--host", "0.0.0.0", "--allowed-host", "pow.example", POW_MCP_TOKEN=ALICE
    ) as url:
        port = url.split(":")[2].split("/")[0]
        auth = {**ACCEPT, "Authorization": f"Bearer {ALICE}"}

        def status_for(host: str) -> int:
            return httpx2.post(url, json=PING, headers={**auth, "Host": host}).status_code

        for name in ("127.0.0.1", "localhost", socket.gethostname(), "pow.example"):
            assert status_for(f"{name}:{port}") not in (403, 421), name
        assert status_for(f"evil.example:{port}") in (403, 421)
