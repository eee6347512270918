"""What open job views cost the pool: its hash rate with 100 views watching the job, against
no views, in the same run (interleaved rounds; these machines are noisy).

Usage: python benchmarks/views.py [--views 100] [--seconds 40] [--rounds 3] [--pace schedule]

Starts `pow-mcp --transport http` and, each round, runs one job that finds no proof for about
S seconds (max_iterations) twice: once with nobody watching, once with N views on it. A view
here is what the job view does over MCP, minus the drawing: an MCP session of its own, a
look (`query_proof_of_work_status`) on its schedule, and one `wait_for_job` kept open for
the job's end. Two paces:

- schedule: what the view does for a job that still has minutes to go (ui/src/model.ts,
  refreshDelay; ui/src/view.ts, endWaitSeconds): a look 10 s after the last fresh record, a
  look's or an answer of its wait, and the wait timed to answer 1 s before that look is due,
  so that in the steady state the wait's answers are the looks (the count in between is
  advanced in the browser);
- fastest: the same with a look every second, the most a view ever asks (a job a few
  seconds from its end, or just queued).

A rate is the job's hashes over its running time, as the server recorded them. The views
run at the lowest CPU priority: in use they run in people's browsers and MCP hosts, not on
the server's machine, and what is measured is what serving them costs the pool. Each round
prints the tool calls a second the views made: at the lowest priority on a machine whose
every core hashes, the views may not manage the fastest pace (the line says so).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, NamedTuple

import anyio
import httpx2
from mcp_server import ROOT, hash_rate

from pow_mcp.pow.bench import cpu_model
from pow_mcp.pow.pool import default_workers

PACES = {"schedule": 10.0, "fastest": 1.0}
HEADERS = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}


class Session:
    """An MCP session over Streamable HTTP (2025-11-25), spoken directly: the load generator
    must cost as little CPU as it can, since it shares the machine with the pool."""

    def __init__(self, http: httpx2.AsyncClient, url: str) -> None:
        self.http, self.url, self.headers, self.next_id = http, url, dict(HEADERS), 0

    async def open(self) -> Session:
        await self.request(
            "initialize",
            {
                "protocolVersion": "2025-11-25",
                "capabilities": {},
                "clientInfo": {"name": "view", "version": "1"},
            },
        )
        note = {"jsonrpc": "2.0", "method": "notifications/initialized"}
        await self.http.post(self.url, headers=self.headers, json=note)
        return self

    async def request(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        self.next_id += 1
        body = {"jsonrpc": "2.0", "id": self.next_id, "method": method, "params": params}
        response = await self.http.post(self.url, headers=self.headers, json=body)
        response.raise_for_status()
        if "mcp-session-id" in response.headers:
            self.headers["mcp-session-id"] = response.headers["mcp-session-id"]
            self.headers["mcp-protocol-version"] = "2025-11-25"
        text = response.text
        data = next((ln[5:] for ln in text.splitlines() if ln.startswith("data:")), text)
        answer: dict[str, Any] = json.loads(data)
        return answer["result"]

    calls = 0  # tool calls made by all sessions

    async def tool(self, name: str, **arguments: Any) -> dict[str, Any]:
        Session.calls += 1
        result = await self.request("tools/call", {"name": name, "arguments": arguments})
        assert not result.get("isError"), result
        content: dict[str, Any] = result["structuredContent"]
        return content


async def watch(session: Session, job_id: str, pace: float) -> None:
    """One view of `job_id` until it ends: a look, then one `pace` seconds after the last
    fresh record (a look, or an answer of the wait for the end that the view keeps open)."""
    ended = anyio.Event()
    fresh_at = anyio.current_time()

    async def wait_for_end() -> None:
        nonlocal fresh_at
        while True:
            wait = max(1.0, pace - 1.0)  # as the view's endWaitSeconds
            record = await session.tool("wait_for_job", job_id=job_id, timeout_seconds=wait)
            fresh_at = anyio.current_time()
            if not record.get("timed_out"):
                ended.set()
                return

    async with anyio.create_task_group() as tg:
        tg.start_soon(wait_for_end)
        await session.tool("query_proof_of_work_status", job_id=job_id)
        while not ended.is_set():
            with anyio.move_on_after(fresh_at + pace - anyio.current_time()):
                await ended.wait()
            if not ended.is_set() and anyio.current_time() >= fresh_at + pace:
                await session.tool("query_proof_of_work_status", job_id=job_id)
                fresh_at = anyio.current_time()


async def run_watched(url: str, hashes: int, views: int, pace: float) -> dict[str, Any]:
    """A job of `hashes` hashes (it finds no proof), with `views` views on it; its record."""
    limits = httpx2.Limits(max_connections=2 * views + 4, max_keepalive_connections=2 * views)
    async with httpx2.AsyncClient(timeout=600, limits=limits) as http:
        control = await Session(http, url).open()
        # The views are open before the job starts, as views that have been open a while.
        sessions = [await Session(http, url).open() for _ in range(views)]
        started = await control.tool(
            "start_proof_of_work", prefix="5-42BUILD1000NONCE", difficulty=64, max_iterations=hashes
        )
        job_id = started["job_id"]
        async with anyio.create_task_group() as tg:
            for session in sessions:
                tg.start_soon(watch, session, job_id, pace)
            while True:
                record = await control.tool("wait_for_job", job_id=job_id, timeout_seconds=300)
                if not record["timed_out"]:
                    return record


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def start_server(data_dir: str, port: int) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JOBS_", "POW_"))}
    command = [sys.executable, "-m", "pow_mcp.server.cli", "--transport", "http"]
    command += ["--port", str(port), "--data-dir", data_dir]
    proc = subprocess.Popen(command, cwd=ROOT, env=env, stderr=subprocess.PIPE)
    assert proc.stderr is not None
    for line in proc.stderr:
        if b"Streamable HTTP" in line:
            # Read on, or a full pipe would block the server at its next log line.
            threading.Thread(target=proc.stderr.read, daemon=True).start()
            return proc
    raise RuntimeError("the server did not start")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def measured(pid: int, url: str, hashes: int, views: int, pace: float) -> Figures:
    """The job's hash rate, the server process's CPU share and the calls a second."""
    cpu, wall, calls = cpu_seconds(pid), time.monotonic(), Session.calls
    record = anyio.run(run_watched, url, hashes, views, pace)
    seconds = time.monotonic() - wall
    return Figures(
        hash_rate(record), (cpu_seconds(pid) - cpu) / seconds, (Session.calls - calls) / seconds
    )


class Figures(NamedTuple):
    rate: float  # the job's hashes a second
    server_cpu: float  # the server's CPU, in cores
    calls: float  # tool calls a second, all sessions together


def compare(pid: int, url: str, hashes: int, views: int, pace: str, rounds: int) -> None:
    """Interleaved rounds of no views and `views` views at `pace`; prints each and the median."""
    ratios = []
    for round_ in range(1, rounds + 1):
        none = measured(pid, url, hashes, 0, PACES[pace])
        seen = measured(pid, url, hashes, views, PACES[pace])
        ratios.append(seen.rate / none.rate)
        print(
            f"{pace:8} round {round_}: no views {none.rate / 1e6:6.1f} M/s (server CPU "
            f"{none.server_cpu:5.1%}), {views} views {seen.rate / 1e6:6.1f} M/s (server CPU "
            f"{seen.server_cpu:5.1%}, {seen.calls:5.1f} calls/s): {ratios[-1]:5.3f}x"
        )
    ratio = statistics.median(ratios)
    print(f"{pace:8} median {ratio:5.3f}x: the views cost {1 - ratio:+.1%} of the pool's rate\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--views", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=40.0)
    parser.add_argument("--pace", choices=list(PACES), default="schedule")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    port = free_port()
    url = f"http://127.0.0.1:{port}/mcp"
    with tempfile.TemporaryDirectory() as data_dir:
        proc = start_server(data_dir, port)
        os.nice(19)  # the views' side only: the server and its workers keep their priority
        try:
            hashes = int(measured(proc.pid, url, 200_000_000, 0, 1.0).rate * args.seconds)
            print(f"CPU: {cpu_model()}; {default_workers()} workers; {args.views} views")
            print(f"each figure: a job of {hashes / 1e9:.2f} G hashes (~{args.seconds:g} s)\n")
            compare(proc.pid, url, hashes, args.views, args.pace, args.rounds)
        finally:
            proc.terminate()
            proc.wait(30)


if __name__ == "__main__":
    main()
