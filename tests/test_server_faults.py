"""A proof found while the store cannot be written is kept and saved once it can: the real
server, a disk that fills up (JSON file, SQLite) and a PostgreSQL server that stops."""

from __future__ import annotations

import hashlib
import queue
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client

from tests.chain import Chain
from tests.faults import fill, small_disk
from tests.mcp_helpers import ROOT, call, call_error, connect, free_port, server_env
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


# -- the log while PostgreSQL is away ----------------------------------------------------------

CAUSES = {
    "lease": "could not renew this instance's lease",
    "watch": "lost the notification connection",
    "dispatcher": "dispatching jobs failed",
    "recovery": "looking for interrupted jobs failed",
}
COUNT = re.compile(r"\((\d+) more times? in (\d+) s\)$")


class ServerLog:
    """A server's stderr, line by line as it comes: `until` waits for a line, not for time."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stderr is not None
        self.lines: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        stream = proc.stderr

        def pump() -> None:
            for line in stream:
                self._queue.put(line.rstrip("\n"))
            self._queue.put(None)

        threading.Thread(target=pump, daemon=True).start()

    def until(self, done: Callable[[list[str]], bool], seconds: float = 90) -> None:
        """Read lines until `done(lines so far)` holds."""
        deadline = time.monotonic() + seconds
        while not done(self.lines):
            remaining = deadline - time.monotonic()
            assert remaining > 0, "\n".join(self.lines[-30:])
            line = self._queue.get(timeout=remaining)
            assert line is not None, "the server exited:\n" + "\n".join(self.lines[-30:])
            self.lines.append(line)

    def rest(self) -> None:
        while (line := self._queue.get(timeout=30)) is not None:
            self.lines.append(line)


def _of(cause: str, lines: list[str]) -> list[str]:
    return [line for line in lines if "WARNING" in line and CAUSES[cause] in line]


def _counted_line_of_every_cause(lines: list[str]) -> bool:
    return all(any(COUNT.search(line) for line in _of(cause, lines)) for cause in CAUSES)


def _logged_at(line: str) -> datetime:
    return datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f")


def test_a_server_logs_a_stopped_postgresql_once_per_cause_per_10_s_then_its_return(
    tmp_path: Path,
) -> None:
    pg = PostgresServer()
    pg.start()
    try:
        url = pg.url(pg.create_database())
        command = [sys.executable, "-m", "pow_mcp.server.cli", "--transport", "http"]
        command += ["--port", str(free_port()), "--data-dir", str(tmp_path)]
        env = server_env(tmp_path, JOBS_DATABASE_URL=url, JOBS_LEASE_SECONDS="3")
        proc = subprocess.Popen(command, cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True)
        log = ServerLog(proc)
        try:
            log.until(lambda lines: any("Streamable HTTP" in line for line in lines))
            pg.stop()
            stopped_at = len(log.lines)
            # Each cause speaks at once, then again 10 s later with the count of its repeats.
            log.until(_counted_line_of_every_cause)
            pg.start()
            log.until(lambda lines: any("database reachable again" in line for line in lines))
        finally:
            proc.terminate()
            exit_code = proc.wait(timeout=30)
        log.rest()
    finally:
        pg.cleanup()
    assert exit_code == 0, "\n".join(log.lines[-30:])
    assert not any("Traceback" in line for line in log.lines), "\n".join(log.lines)
    assert not any(pg.password in line for line in log.lines)

    backs = [i for i, line in enumerate(log.lines) if "database reachable again" in line]
    assert len(backs) == 1, "\n".join(log.lines[stopped_at:])
    (back,) = backs
    assert " INFO pow_mcp.store.sql.connection: database reachable again after " in log.lines[back]
    assert re.search(r"after \d+ s \(postgresql://pow:\*\*\*@127\.0\.0\.1:", log.lines[back])
    outage = log.lines[stopped_at:back]
    for cause in CAUSES:
        first, *later = _of(cause, outage)
        assert COUNT.search(first) is None, first
        assert later, cause
        previous = first
        for line in later:
            counted = COUNT.search(line)
            assert counted is not None, line  # repeats in between, all held back
            assert int(counted[1]) >= 1 and int(counted[2]) >= 10, line
            assert (_logged_at(line) - _logged_at(previous)).total_seconds() >= 9.99, line
            previous = line
        assert not _of(cause, log.lines[back:]), cause  # quiet once it is back
