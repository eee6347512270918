"""The chaos run's busy clients, each calling tools with choices drawn from the seed, and the
ledger of what they were told, which the checker holds the store to."""

from __future__ import annotations

import collections
import contextlib
import json
import random
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
from chaos_servers import Server
from mcp import Client

from pow_mcp.store.record import TERMINAL

CALL_SECONDS = 30.0  # every call is answered within this, or counts as unanswered
MAX_UNFINISHED = 12  # clients start no more while this many of their jobs are unfinished
DIFFICULTIES = (4, 5, 5, 6, 6, 6, 7)  # hex zeros: about 65 thousand to 268 million hashes


@dataclass
class Ledger:
    """What the clients were told: their log, and what the checker holds the store to."""

    path: Path
    acked: dict[str, dict[str, Any]] = field(default_factory=dict)  # job id -> its inputs
    seen_ended: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    # (job id, owner, hashes, when): the progress a client was shown of an unfinished job
    seen_running: list[tuple[str, str | None, int, float]] = field(default_factory=list)
    cancelled: set[str] = field(default_factory=set)  # a cancel said it cancelled them
    ops: collections.Counter[str] = field(default_factory=collections.Counter)

    def log(self, entry: dict[str, Any]) -> None:
        with open(self.path, "a") as file:
            file.write(json.dumps(entry, default=str) + "\n")
        self.ops[f"{entry['op']} {entry['outcome']}"] += 1

    def saw(self, record: dict[str, Any], when: float) -> None:
        """A record a client was shown at `when`: if it had ended, that end is final; if
        not, what its owner showed of its progress must reach the store in time."""
        if record.get("status") not in {s.value for s in TERMINAL}:
            hashes = int((record.get("progress") or {}).get("hashes") or 0)
            self.seen_running.append((record["job_id"], record.get("owner"), hashes, when))
        else:
            proof = (record.get("result") or {}).get("proof_of_work") or {}
            seen = {"status": record["status"], "nonce": proof.get("nonce")}
            seen["hash"] = proof.get("hash")
            self.seen_ended.setdefault(record["job_id"], []).append(seen)

    def unfinished(self) -> list[str]:
        ended = set(self.seen_ended) | self.cancelled
        return [job_id for job_id in self.acked if job_id not in ended]


class Clients:
    """Busy clients: each draws its calls from its own generator, seeded from the run's."""

    def __init__(self, servers: list[Server], ledger: Ledger, seed: int):
        self.servers, self.ledger, self.seed = servers, ledger, seed
        self.counter = 0

    async def run(self, index: int, until: float) -> None:
        rng = random.Random(f"{self.seed}-client-{index}")
        while time.monotonic() < until:
            server = rng.choice(self.servers)
            entry: dict[str, Any] = {"op": "connect", "client": index, "server": server.index}
            # One scope around the whole session, its deadline moved on before each call:
            # the SDK client's own task groups then end inside it, whatever times out.
            with anyio.CancelScope(deadline=anyio.current_time() + CALL_SECONDS) as scope:
                try:
                    async with Client(server.url) as client:
                        while time.monotonic() < until:
                            scope.deadline = anyio.current_time() + CALL_SECONDS
                            entry = self._entry(rng, index, server)
                            await self._call(client, entry)
                        scope.deadline = anyio.current_time() + 5  # closing
                except Exception as exc:  # a killed server, a refused session: another one
                    self.ledger.log({**entry, "outcome": "unanswered", "error": repr(exc)})
            if scope.cancelled_caught:  # no answer in time: a frozen server
                self.ledger.log({**entry, "outcome": "unanswered", "error": "timed out"})
            await anyio.sleep(0.2)

    def _entry(self, rng: random.Random, index: int, server: Server) -> dict[str, Any]:
        op, arguments = self._choose(rng, index)
        entry = {"t": time.time(), "client": index, "server": server.index, "op": op}
        return {**entry, "arguments": arguments}

    async def _call(self, client: Client, entry: dict[str, Any]) -> None:
        """One call, logged with its answer; raises when the server does not answer."""
        arguments = entry.pop("arguments")
        result = await client.call_tool(entry["op"], arguments)
        content = result.structured_content or {}
        if result.is_error:  # the tool's own words: what was refused, and why
            content = {"text": " ".join(getattr(b, "text", "") for b in result.content)}
        outcome = "error" if result.is_error else "ok"
        self.ledger.log({**entry, "arguments": arguments, "outcome": outcome, "answer": content})
        if not result.is_error:
            self._learn(entry["op"], arguments, content, entry["t"], time.time())

    def _choose(self, rng: random.Random, index: int) -> tuple[str, dict[str, Any]]:
        unfinished = self.ledger.unfinished()
        known = list(self.ledger.acked)
        weights = {"start": 4, "batch": 1, "pause": 2, "resume": 2, "cancel": 1, "wait": 3}
        weights |= {"wait_many": 1, "query": 2}
        if len(unfinished) >= MAX_UNFINISHED:
            weights["start"] = weights["batch"] = 0
        if not known:
            return "start_proof_of_work", self._job(rng, index)
        op = rng.choices(list(weights), list(weights.values()))[0]
        target = rng.choice(unfinished if unfinished and rng.random() < 0.8 else known)
        if op == "start":
            return "start_proof_of_work", self._job(rng, index)
        if op == "batch":
            jobs = [self._job(rng, index) for _ in range(rng.randint(2, 4))]
            return "start_proof_of_work_batch", {"jobs": jobs, "tags": ["chaos"]}
        if op in ("pause", "resume", "cancel"):
            return f"{op}_job", {"job_id": target}
        if op == "wait":
            return "wait_for_job", {"job_id": target, "timeout_seconds": rng.uniform(0, 5)}
        if op == "wait_many":
            ids = rng.sample(known, min(len(known), rng.randint(1, 5)))
            mode = rng.choice(["all", "any"])
            return "wait_for_jobs", {"job_ids": ids, "mode": mode, "timeout_seconds": 3}
        return "query_proof_of_work_status", {"job_id": target}

    def _job(self, rng: random.Random, index: int) -> dict[str, Any]:
        self.counter += 1
        job: dict[str, Any] = {
            "prefix": f"chaos-{self.seed}-{index}-{self.counter}-",
            "difficulty": rng.choice(DIFFICULTIES),
            "priority": rng.choice(["low", "normal", "normal", "high"]),
        }
        if rng.random() < 0.3:
            job["max_retries"] = rng.randint(1, 3)
            job["retry_delay_seconds"] = 1
        return job

    def _learn(
        self, op: str, arguments: dict[str, Any], answer: dict[str, Any], t: float, now: float
    ) -> None:
        ledger = self.ledger
        if op == "start_proof_of_work":
            ledger.acked[answer["job_id"]] = {**arguments, "t": t}
        elif op == "start_proof_of_work_batch":
            for job_id, job in zip(answer["job_ids"], arguments["jobs"], strict=True):
                ledger.acked[job_id] = {**job, "t": t}
        elif op == "cancel_job" and answer.get("cancelled"):
            ledger.cancelled.add(arguments["job_id"])
        elif op in ("wait_for_job", "query_proof_of_work_status"):
            ledger.saw(answer, now)
        elif op == "wait_for_jobs":
            for record in answer.get("jobs", []):
                ledger.saw(record, now)


@contextlib.asynccontextmanager
async def _session(url: str) -> AsyncIterator[Client]:
    """A connected client; closing it gives up after a few seconds (a frozen server)."""
    client = Client(url)
    with anyio.fail_after(CALL_SECONDS):
        await client.__aenter__()
    try:
        yield client
    finally:
        with anyio.move_on_after(5), contextlib.suppress(Exception):
            await client.__aexit__(None, None, None)
