"""Streamable HTTP: start and wait through the SDK client; foreign Host/Origin refused."""

from __future__ import annotations

import hashlib
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import anyio
import httpx2
import pytest
from mcp import Client

from tests.mcp_helpers import ROOT, LiveServer, call, server_env
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


async def test_a_stop_does_not_wait_out_a_clients_long_wait(tmp_path: Path) -> None:
    """SIGTERM while a client waits (wait_for_job, 280 s): the wait answers at once, timed
    out, with the job as it is, and the server stops with exit 0 without waiting out the
    280 s (it once did: uvicorn waited for the open request)."""
    with LiveServer(tmp_path) as server:
        async with Client(f"{server.origin}/mcp") as client:
            job = await call(client, "start_proof_of_work", prefix="stop-", difficulty=12)
            waiting = anyio.Event()

            async def progress(done: float, total: float | None, message: str | None) -> None:
                waiting.set()  # the server reports from inside the wait

            async def stop_once_waiting() -> None:
                await waiting.wait()
                assert server.proc is not None
                server.proc.send_signal(signal.SIGTERM)

            async with anyio.create_task_group() as tg:
                tg.start_soon(stop_once_waiting)
                with anyio.fail_after(60):
                    answer = await client.call_tool(
                        "wait_for_job",
                        {"job_id": job["job_id"], "timeout_seconds": 280},
                        progress_callback=progress,
                    )
    assert not answer.is_error and answer.structured_content is not None
    assert answer.structured_content["timed_out"] is True
    assert answer.structured_content["job_id"] == job["job_id"]
