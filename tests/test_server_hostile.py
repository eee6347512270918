"""Inputs a hostile test found: each gets a clear error, changes nothing stored, and the
server lives on."""

from __future__ import annotations

import json
import select
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.mcp_helpers import ROOT, call, call_error, connect, server_env


class RawStdio:
    """The server over stdio, spoken to line by line (what the SDK client cannot send)."""

    def __init__(self, data_dir: Path) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "pow_mcp.server.cli", "--data-dir", str(data_dir)],
            cwd=ROOT,
            env=server_env(data_dir),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )

    def send(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line.encode() + b"\n")
        self.proc.stdin.flush()

    def answer(self, timeout: float = 30) -> dict[str, Any]:
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        assert ready, "no answer"
        answer: dict[str, Any] = json.loads(self.proc.stdout.readline())
        return answer


@pytest.fixture
def raw(tmp_path: Path) -> Iterator[RawStdio]:
    server = RawStdio(tmp_path)
    try:
        yield server
    finally:
        server.proc.kill()
        server.proc.wait()


def test_a_lone_surrogate_gets_an_answer_and_the_server_goes_on(raw: RawStdio) -> None:
    hello = {"protocolVersion": "2025-11-25", "capabilities": {}}
    hello["clientInfo"] = {"name": "raw", "version": "1"}
    raw.send(json.dumps({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": hello}))
    assert raw.answer()["id"] == 1
    raw.send(json.dumps({"jsonrpc": "2.0", "method": "notifications/initialized"}))
    arguments = '{"prefix": "\\ud800", "difficulty": 1}'
    raw.send(
        '{"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": '
        f'{{"name": "start_proof_of_work", "arguments": {arguments}}}}}'
    )
    refused = raw.answer()
    assert refused["id"] == 2 and refused["error"]["code"] == -32700
    assert "surrogate" in refused["error"]["message"]
    raw.send(
        json.dumps(
            {
                "jsonrpc": "2.0",
                "id": 3,
                "method": "tools/call",
                "params": {"name": "list_jobs", "arguments": {}},
            }
        )
    )
    listed = raw.answer()
    assert listed["id"] == 3 and listed["result"]["structuredContent"]["total"] == 0


async def test_odd_types_in_a_stored_record_never_break_a_page(tmp_path: Path) -> None:
    async with connect(tmp_path) as client:
        good = await call(client, "start_proof_of_work", prefix="good-", difficulty=1)
        odd = await call(client, "start_proof_of_work", prefix="odd-", difficulty=1)
        for job in (good, odd):
            await call(client, "wait_for_job", job_id=job["job_id"])
    stored = json.loads((tmp_path / "jobs.json").read_text())
    stored[odd["job_id"]]["job_data"].update(label=123, prefix=["a"], difficulty="x")
    (tmp_path / "jobs.json").write_text(json.dumps(stored))

    async with connect(tmp_path) as client:
        page = await call(client, "list_jobs")
        assert page["total"] == 2
        entries = {j["job_id"]: j for j in page["jobs"]}
        assert entries[odd["job_id"]]["prefix"] is None and entries[odd["job_id"]]["label"] is None
        assert entries[good["job_id"]]["prefix"] == "good-"
        contents = (await client.read_resource("pow://jobs")).contents[0]
        assert json.loads(getattr(contents, "text", ""))["total"] == 2
        record = await call(client, "query_proof_of_work_status", job_id=odd["job_id"])
        assert record["job_data"]["label"] == 123  # the record itself stays readable


async def test_huge_retention_and_cleanup_ages_mean_keep(tmp_path: Path) -> None:
    async with connect(tmp_path, JOBS_RETENTION_SECONDS="1e11") as client:
        job = await call(client, "start_proof_of_work", prefix="kept-", difficulty=1)
        await call(client, "wait_for_job", job_id=job["job_id"])
        for age in (6.4e10, 1e300):
            removed = await call(client, "cleanup_jobs", max_age_seconds=age)
            assert removed["removed"] == 0
        assert (await call(client, "list_jobs"))["total"] == 1


async def test_numbers_are_strict_and_sizes_are_named(tmp_path: Path) -> None:
    async with connect(tmp_path) as client:
        for wrong in (True, "5", 5.0):
            error = await call_error(client, "start_proof_of_work", prefix="x-", difficulty=wrong)
            assert "difficulty" in error
        huge_block = int("9" * 1100)
        error = await call_error(
            client,
            "start_proof_of_work",
            action_type="struct_build_complete",
            entity_id="5-42",
            block_start=huge_block,
            difficulty=2,
        )
        assert "prefix must be 1 to 1024 characters" in error
        error = await call_error(
            client, "verify_proof_of_work", prefix="x-", difficulty=1, nonce="9" * 5000
        )
        assert "nonce" in error and "64 characters" in error
        error = await call_error(
            client, "start_proof_of_work", prefix="x-", difficulty=2, label="l" * 257
        )
        assert "label" in error
        assert (await call(client, "list_jobs"))["total"] == 0
