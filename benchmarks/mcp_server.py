"""The real server for the benchmarks: started over stdio with the SDK client, found by pid,
and one long job run through it to its end."""

from __future__ import annotations

import os
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

from mcp import Client
from mcp.client.stdio import StdioServerParameters

ROOT = Path(__file__).resolve().parent.parent


@asynccontextmanager
async def server(data_dir: Path | str, **env: str) -> AsyncIterator[Client]:
    """`pow-mcp` on `data_dir`, with `env` and none of the caller's JOBS_/POW_ variables."""
    variables = {k: v for k, v in os.environ.items() if not k.startswith(("JOBS_", "POW_"))}
    variables.update(env)
    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "pow_mcp.server.cli", "--data-dir", str(data_dir)],
        env=variables,
        cwd=ROOT,
    )
    async with Client(params, read_timeout_seconds=600) as client:
        yield client


def server_pid(data_dir: Path | str) -> int:
    """The pid of the server serving `data_dir`."""
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                argv = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if b"pow_mcp.server.cli" in argv and str(data_dir).encode() in argv:
                return int(entry.name)
    raise RuntimeError("server process not found")


async def run_job(client: Client, prefix: str, hashes: int) -> dict[str, Any]:
    """Run a job that finds no proof in `hashes` hashes to its end; its final record."""
    started = await client.call_tool(
        "start_proof_of_work", {"prefix": prefix, "difficulty": 64, "max_iterations": hashes}
    )
    assert started.structured_content is not None, started
    job_id = started.structured_content["job_id"]
    while True:
        done = await client.call_tool("wait_for_job", {"job_id": job_id, "timeout_seconds": 300})
        record = done.structured_content
        assert record is not None
        if not record["timed_out"]:
            return record


def hash_rate(record: dict[str, Any]) -> float:
    """A finished job's hashes over its running time."""
    began = datetime.fromisoformat(record["started_at"])
    ended = datetime.fromisoformat(record["completed_at"])
    return float(record["progress"]["hashes"]) / (ended - began).total_seconds()
