"""Two server processes (two MCP clients) on one data directory."""

from __future__ import annotations

import contextlib
import os
import signal
from pathlib import Path

from tests.mcp_helpers import call, call_error, connect, jobs_file, server_pids


async def test_two_servers_share_jobs_and_respect_each_others_work(tmp_path: Path) -> None:
    async with connect(tmp_path) as b:
        (b_pid,) = server_pids(tmp_path)
        with contextlib.suppress(Exception):  # client A sees its server die
            async with connect(tmp_path) as a:
                (a_pid,) = set(server_pids(tmp_path)) - {b_pid}
                theirs = await call(a, "start_proof_of_work", prefix="a-", difficulty=64)
                mine = await call(b, "start_proof_of_work", prefix="b-", difficulty=2)
                await call(b, "wait_for_job", job_id=mine["job_id"])

                # Each sees the other's jobs, with their current status.
                listed = await call(a, "list_jobs")
                assert {j["job_id"] for j in listed["jobs"]} == {theirs["job_id"], mine["job_id"]}
                seen = await call(a, "query_proof_of_work_status", job_id=mine["job_id"])
                assert seen["status"] == "completed"
                # Only the server running a job can stop its workers.
                refusal = await call_error(b, "cancel_job", job_id=theirs["job_id"])
                assert "another pow-mcp process" in refusal

                os.kill(a_pid, signal.SIGKILL)
                await a.list_tools()

        # The survivor never marks the dead server's job as interrupted on its own...
        assert jobs_file(tmp_path)[theirs["job_id"]]["status"] in ("queued", "running")
        # ...but nothing hashes it any more, so it may cancel it now.
        answer = await call(b, "cancel_job", job_id=theirs["job_id"])
        assert answer["cancelled"] is True
    assert jobs_file(tmp_path)[theirs["job_id"]]["status"] == "cancelled"
    assert jobs_file(tmp_path)[mine["job_id"]]["status"] == "completed"
