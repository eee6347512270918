"""Two server processes (two MCP clients) on one store: the JSON file, SQLite, PostgreSQL."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import anyio

from tests.conftest import TIMING
from tests.mcp_helpers import call, connect, server_goes_away, server_pids
from tests.test_server_lifecycle import children_of


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time the processes have used so far."""
    ticks = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def cpu_used_over(pids: list[int], seconds: float) -> float:
    """CPU seconds the processes use during the next `seconds` (a measurement window)."""
    before = cpu_seconds(pids)
    time.sleep(seconds)
    return cpu_seconds(pids) - before


@TIMING
async def test_any_server_sees_and_cancels_any_job(
    tmp_path: Path, store_env: dict[str, str]
) -> None:
    async with connect(tmp_path, **store_env) as a, connect(tmp_path, **store_env) as b:
        theirs = await call(a, "start_proof_of_work", prefix="a-", difficulty=64)
        mine = await call(b, "start_proof_of_work", prefix="b-", difficulty=2)
        await call(b, "wait_for_job", job_id=mine["job_id"])
        listed = await call(a, "list_jobs")
        assert {j["job_id"] for j in listed["jobs"]} == {theirs["job_id"], mine["job_id"]}
        seen = await call(a, "query_proof_of_work_status", job_id=mine["job_id"])
        assert seen["status"] == "completed"

        workers = [w for pid in server_pids(tmp_path) for w in children_of(pid)]
        assert cpu_used_over(workers, 1.0) > 0.2  # a's worker hashes its job (busy machine: > 0.2)
        answer = await call(b, "cancel_job", job_id=theirs["job_id"])
        assert answer["cancelled"] is True
        # Within a second the owner's workers stop: then their CPU time stands still.
        await anyio.sleep(1.0)
        assert cpu_used_over(workers, 1.0) < 0.1, "a worker still hashes after the cancel"
        record = await call(a, "query_proof_of_work_status", job_id=theirs["job_id"])
        assert record["status"] == "cancelled"


async def test_a_killed_servers_jobs_are_recovered_by_a_live_one(
    tmp_path: Path, store_env: dict[str, str]
) -> None:
    async with connect(tmp_path, **store_env) as b:
        (b_pid,) = server_pids(tmp_path)
        with server_goes_away():
            async with connect(tmp_path, **store_env) as a:
                theirs = await call(a, "start_proof_of_work", prefix="a-", difficulty=64)
                (a_pid,) = set(server_pids(tmp_path)) - {b_pid}
                os.kill(a_pid, signal.SIGKILL)
                await a.list_tools()
        # b applies JOBS_RECOVERY=fail on its own, within a few seconds, without a restart.
        with anyio.fail_after(20):
            record = await call(b, "wait_for_job", job_id=theirs["job_id"], timeout_seconds=15)
        assert record["status"] == "failed", record
        assert record["error"] == "Job was interrupted by system shutdown"
