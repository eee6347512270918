"""Streamable HTTP: start and wait through the SDK client; foreign Host/Origin refused."""

from __future__ import annotations

import hashlib
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx2
import pytest
from mcp import Client

from tests.mcp_helpers import ROOT, call, server_env
from tests.mcp_helpers import http_server as serve_http


@pytest.fixture
def http_server(tmp_path: Path) -> Iterator[str]:
    with serve_http(tmp_path) as url:
        yield url


async def test_start_and_wait_over_streamable_http(http_server: str) -> None:
    async with Client(http_server) as client:
        job = await call(client, "start_proof_of_work", prefix="http-", difficulty=3)
        record = await call(client, "wait_for_job", job_id=job["job_id"], timeout_seconds=60)
    assert record["status"] == "completed"
    proof = record["result"]["proof_of_work"]
    assert hashlib.sha256(f"http-{proof['nonce']}".encode()).hexdigest() == proof["hash"]


def test_requests_from_a_foreign_host_or_origin_are_refused(http_server: str) -> None:
    body = {"jsonrpc": "2.0", "id": 1, "method": "ping"}
    headers = {"Accept": "application/json, text/event-stream"}
    evil_host = httpx2.post(http_server, json=body, headers={**headers, "Host": "evil.example"})
    assert evil_host.status_code in (403, 421)
    evil_origin = httpx2.post(
        http_server, json=body, headers={**headers, "Origin": "http://evil.example"}
    )
    assert evil_origin.status_code == 403


def test_a_busy_port_is_a_clear_error(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "pow_mcp.server.cli",
                "--transport",
                "http",
                "--port",
                str(port),
            ],
            cwd=ROOT,
            env=server_env(tmp_path),
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert proc.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in proc.stderr and "Traceback" not in proc.stderr
