"""A chaos run: servers on one store, busy clients, a fault schedule drawn from a seed, and at
the end an invariant checker over the store and the clients' logs.

    make chaos SECONDS=120 SEED=7 BACKEND=sqlite     # or postgresql, json

Two or three `pow-mcp --transport http` servers share one store (JSON file, SQLite or a
PostgreSQL server of the run's own, reached through a TCP proxy of the run's own). Clients
(the SDK's, over HTTP) start jobs and batches, pause, resume, cancel, query and wait, one
call after another. Meanwhile the schedule SIGKILLs a server (and starts it again), freezes
one with SIGSTOP for longer than JOBS_LEASE_SECONDS, restarts PostgreSQL, cuts or slows
its connections at the proxy, and (as root) fills the disk under a SQLite or JSON store.
The faults stop for the last part of the run; then the checker reads everything back.

It prints the faults, the operations, each invariant with how many cases it checked and
its breaches, and the seed; it exits 1 on any breach. The seed fixes the schedule and the
clients' choices (the timing of a real machine varies, so a replay is close, not exact).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import hashlib
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import anyio
from mcp import Client

from pow_mcp.store import JobRecord, JobStatus, StoreSettings, open_store
from pow_mcp.store.record import TERMINAL
from pow_mcp.store.transfer import all_jobs

ROOT = Path(__file__).resolve().parent.parent
LEASE_SECONDS = 3.0
DEBOUNCE_SECONDS = 0.25
CHECKPOINT_SLACK_SECONDS = 1.0  # a worker reports progress about every 0.1 s; timers, load
CALL_SECONDS = 30.0  # every call is answered within this, or counts as unanswered
MAX_UNFINISHED = 12  # clients start no more while this many of their jobs are unfinished
SETTLE_SECONDS = 45.0  # at the end, without faults, for the queue to drain
# After a store fault ends: reconnecting, the progress writer's pause before it retries, a
# transaction whose round trips were each slowed down.
STORE_RECOVERY_SECONDS = 5.0
DIFFICULTIES = (4, 5, 5, 6, 6, 6, 7)  # hex zeros: about 65 thousand to 268 million hashes


# -- the store and its faults --------------------------------------------------------------


class Proxy:
    """A TCP proxy to PostgreSQL that can cut every connection or slow them down."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream = upstream_port
        self.port = 0
        self.delay = 0.0
        self.refuse_until = 0.0
        self._writers: set[asyncio.StreamWriter] = set()
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        self.cut(0)

    def cut(self, refuse_seconds: float) -> None:
        """Drop every open connection; refuse new ones for `refuse_seconds`."""
        self.refuse_until = time.monotonic() + refuse_seconds
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if time.monotonic() < self.refuse_until:
            writer.transport.abort()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream)
        except OSError:
            writer.transport.abort()
            return
        self._writers |= {writer, up_writer}
        try:
            await asyncio.gather(self._pump(reader, up_writer), self._pump(up_reader, writer))
        finally:
            for end in (writer, up_writer):
                self._writers.discard(end)
                end.transport.abort()

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, asyncio.IncompleteReadError):
            while chunk := await reader.read(65536):
                if self.delay:
                    await asyncio.sleep(self.delay)
                writer.write(chunk)
                await writer.drain()
        writer.transport.abort()


@dataclass
class Store:
    """Where the jobs are, and the handles the faults need."""

    backend: str
    data_dir: Path
    url: str | None  # JOBS_DATABASE_URL for the servers
    disk: Path | None = None  # a small tmpfs under the store's files (root only)
    postgres: Any = None  # tests.pg_server.PostgresServer
    postgres_db: str = ""
    proxy: Proxy | None = None

    def settings(self) -> StoreSettings:
        """For the checker: the store itself, not through the proxy."""
        url = self.url
        if self.postgres is not None:
            url = self.postgres.url(self.postgres_db)
        return StoreSettings(self.data_dir, database_url=url, lease_seconds=LEASE_SECONDS)


@contextlib.asynccontextmanager
async def open_backend(backend: str, root: Path) -> AsyncIterator[Store]:
    data_dir = root / "data"
    data_dir.mkdir()
    if backend == "postgresql":
        from tests.pg_server import PostgresServer

        server = PostgresServer()
        server.start()
        proxy = Proxy(server.port)
        await proxy.start()
        try:
            name = server.create_database()
            url = server.url(name).replace(f":{server.port}/", f":{proxy.port}/")
            store = Store(backend, data_dir, url, postgres=server, proxy=proxy, postgres_db=name)
            yield store
        finally:
            await proxy.close()
            server.cleanup()
        return
    disk = _small_disk(data_dir)
    try:
        url = f"sqlite:///{data_dir / 'jobs.db'}" if backend == "sqlite" else None
        yield Store(backend, data_dir, url, disk=disk)
    finally:
        if disk is not None:  # the store's files outlive the tmpfs, for a look after a breach
            shutil.copytree(data_dir, root / "store", ignore=shutil.ignore_patterns("ballast"))
            _unmount(disk)


def _small_disk(where: Path) -> Path | None:
    """A 64 MiB tmpfs at `where`, to fill up; None where mounting is not allowed."""
    if os.geteuid() != 0 or sys.platform != "linux":
        return None
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(where)], capture_output=True
    )
    return where if mounted.returncode == 0 else None


def _unmount(disk: Path) -> None:
    subprocess.run(["umount", "-l", str(disk)], check=False)


def fill(disk: Path) -> Path:
    """Write a ballast file until the disk is full; returns it (remove it to free the disk)."""
    ballast = disk / "ballast"
    with open(ballast, "wb", buffering=0) as file:
        chunk = b"\0" * 65536
        while chunk:
            try:
                file.write(chunk)
            except OSError:
                chunk = chunk[: len(chunk) // 2]
    return ballast


# -- the servers -----------------------------------------------------------------------------


@dataclass
class Server:
    index: int
    port: int
    env: dict[str, str]
    data_dir: Path
    log: Path
    proc: subprocess.Popen[bytes] | None = None
    frozen: bool = False

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/mcp"

    async def start(self) -> None:
        self.proc = self._spawn()
        with anyio.fail_after(120):
            while not _listening(self.port):
                if self.proc.poll() is not None:
                    raise RuntimeError(f"server {self.index} exited: see {self.log}")
                await anyio.sleep(0.1)

    def _spawn(self) -> subprocess.Popen[bytes]:
        command = [sys.executable, "-m", "pow_mcp.server.cli", "--transport", "http"]
        command += ["--port", str(self.port), "--data-dir", str(self.data_dir)]
        with open(self.log, "ab") as log:  # its own session: a freeze stops its workers too
            return subprocess.Popen(
                command, cwd=ROOT, env=self.env, stderr=log, start_new_session=True
            )

    def kill(self) -> None:
        """SIGKILL the server alone: its workers must notice and exit by themselves."""
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait()

    def freeze(self, frozen: bool) -> None:
        """SIGSTOP or SIGCONT the server and its workers, as a frozen VM."""
        assert self.proc is not None
        os.killpg(self.proc.pid, signal.SIGSTOP if frozen else signal.SIGCONT)
        self.frozen = frozen

    def stop(self) -> int:
        assert self.proc is not None
        if self.frozen:
            self.freeze(False)
        self.proc.terminate()
        try:
            return self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return -9


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def server_env(store: Store, recovery: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JOBS_", "POW_", "BLOCK_"))}
    env.update(
        POW_WORKERS="1",
        JOBS_LEASE_SECONDS=str(LEASE_SECONDS),
        JOBS_SAVE_DEBOUNCE_SECONDS=str(DEBOUNCE_SECONDS),
        JOBS_RECOVERY=recovery,
        JOBS_RETENTION_SECONDS="86400",  # the checker needs every job still there
        PYTHONUNBUFFERED="1",
    )
    if store.url is not None:
        env["JOBS_DATABASE_URL"] = store.url
    return env


# -- the fault schedule ----------------------------------------------------------------------


@dataclass
class Fault:
    kind: str
    at: float  # seconds since the start of the run
    seconds: float  # how long it lasted
    server: int | None = None
    pid: int | None = None  # the server process it hit


class Faults:
    """Draws faults from the seed and applies them one after another."""

    def __init__(self, rng: random.Random, store: Store, servers: list[Server], t0: float):
        self.rng, self.store, self.servers, self.t0 = rng, store, servers, t0
        self.done: list[Fault] = []
        self.kinds = ["kill", "freeze"]
        if store.postgres is not None:
            self.kinds += ["pg_restart", "pg_cut", "pg_delay"]
        if store.disk is not None:
            self.kinds.append("disk_full")

    async def run(self, until: float) -> None:
        await anyio.sleep(5)  # the first jobs get going
        while time.monotonic() < until:
            kind = self.rng.choice(self.kinds)
            await getattr(self, kind)()
            await anyio.sleep(self.rng.uniform(1, 6))

    def _note(self, kind: str, began: float, **details: Any) -> None:
        fault = Fault(kind, began - self.t0, time.monotonic() - began, **details)
        self.done.append(fault)
        print(f"  {fault.at:7.1f}s  {kind} for {fault.seconds:.1f}s {details}", flush=True)

    def _server(self) -> Server:
        return self.rng.choice(self.servers)

    async def kill(self) -> None:
        server, began = self._server(), time.monotonic()
        pid = server.proc.pid if server.proc else None
        server.kill()
        await anyio.sleep(self.rng.uniform(0.2, 3))
        await server.start()
        self._note("kill", began, server=server.index, pid=pid)

    async def freeze(self) -> None:
        server, began = self._server(), time.monotonic()
        pid = server.proc.pid if server.proc else None
        server.freeze(True)
        try:
            await anyio.sleep(LEASE_SECONDS * self.rng.uniform(1.5, 3))
        finally:
            server.freeze(False)
        self._note("freeze", began, server=server.index, pid=pid)

    async def pg_restart(self) -> None:
        began = time.monotonic()
        pg = self.store.postgres
        await anyio.to_thread.run_sync(pg.stop, self.rng.choice(["fast", "immediate"]))
        await anyio.sleep(self.rng.uniform(0.5, 4))
        await anyio.to_thread.run_sync(pg.start)
        self._note("pg_restart", began)

    async def pg_cut(self) -> None:
        began = time.monotonic()
        assert self.store.proxy is not None
        self.store.proxy.cut(self.rng.uniform(0, 3))
        await anyio.sleep(self.store.proxy.refuse_until - time.monotonic())
        self._note("pg_cut", began)

    async def pg_delay(self) -> None:
        began = time.monotonic()
        assert self.store.proxy is not None
        self.store.proxy.delay = self.rng.uniform(0.1, 1.5)
        try:
            await anyio.sleep(self.rng.uniform(2, 8))
        finally:
            self.store.proxy.delay = 0.0
        self._note("pg_delay", began)

    async def disk_full(self) -> None:
        began = time.monotonic()
        assert self.store.disk is not None
        ballast = await anyio.to_thread.run_sync(fill, self.store.disk)
        try:
            await anyio.sleep(self.rng.uniform(1, 6))
        finally:
            ballast.unlink()
        self._note("disk_full", began)


# -- the clients -----------------------------------------------------------------------------


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


# -- the checker -----------------------------------------------------------------------------


@dataclass
class Invariant:
    name: str
    checked: int = 0
    breaches: list[str] = field(default_factory=list)

    def check(self, ok: bool, breach: str) -> None:
        self.checked += 1
        if not ok:
            self.breaches.append(breach)


async def check_progress(store: Store, servers: list[Server], lease: Invariant) -> None:
    """After the faults: every job ends, or is paused, or is live: owned by a running
    server that is hashing (this job, or one ahead of it: one worker serves its server's
    jobs by priority, then age)."""
    deadline = time.monotonic() + SETTLE_SECONDS
    async with open_store(store.settings(), serving=False) as reader:
        while True:
            before = {r.job_id: r for r in await all_jobs(reader)}
            if not [r for r in before.values() if _moving(r)] or time.monotonic() > deadline:
                break
            await anyio.sleep(1)
        await anyio.sleep(2 + 4 * DEBOUNCE_SECONDS)
        after = {r.job_id: r for r in await all_jobs(reader)}
    running = {str(s.proc.pid) for s in servers if s.proc is not None and s.proc.poll() is None}
    moved = {
        job_id
        for job_id, r in after.items()
        if job_id in before
        and (
            r.status != before[job_id].status or r.progress.hashes > before[job_id].progress.hashes
        )
    }
    busy = {after[job_id].owner for job_id in moved}
    for job_id, record in after.items():
        alive = str(record.owner).split("-")[0] in running
        ok = not _moving(record) or job_id in moved or (alive and record.owner in busy)
        status = record.status.value
        lease.check(ok, f"job {job_id} is {status} and not moving after the faults stopped")


def _moving(record: JobRecord) -> bool:
    return record.status not in TERMINAL | {JobStatus.PAUSED}


def check_all(
    records: list[JobRecord],
    ledger: Ledger,
    faults: list[Fault],
    servers: list[Server],
    recovery: str,
    t0_wall: float,
) -> list[Invariant]:
    present = Invariant("every acknowledged job is stored exactly once")
    ended = Invariant("no job ended twice, or with two different proofs")
    proofs = Invariant("every stored proof verifies")
    overlap = Invariant("no two instances hashed one job for longer than a lease")
    redone = Invariant("after a kill or freeze, only the last checkpoint interval is redone")
    clean = Invariant("no server logged a traceback")

    counts = collections.Counter(r.job_id for r in records)
    by_id = {r.job_id: r for r in records}
    for job_id in ledger.acked:
        present.check(counts[job_id] == 1, f"job {job_id} is stored {counts[job_id]} times")
    for job_id, seen in ledger.seen_ended.items():
        record = by_id.get(job_id)
        for view in seen:
            final = _view(record)
            ended.check(final == view, f"job {job_id} was shown {view}, is now {final}")
    for job_id in ledger.cancelled:
        record = by_id.get(job_id)
        status = record.status.value if record else None
        ended.check(status == "cancelled", f"job {job_id}: cancel acknowledged, is {status}")
    completions = collections.Counter(_completions(servers))
    for job_id, n in completions.items():
        ended.check(n == 1, f"job {job_id} completed {n} times in the servers' logs")

    for record in records:
        proof = record.result.proof_of_work if record.result else None
        if record.status is JobStatus.COMPLETED or proof is not None:
            proofs.check(_verifies(record), f"job {record.job_id}: its proof does not verify")
        _check_attempts(record, overlap)
    if recovery == "resume":
        _check_redone(records, faults, ledger, redone, t0_wall)
    for server in servers:
        text = server.log.read_text(errors="replace")
        clean.check("Traceback" not in text, f"server {server.index} logged a traceback")
    return [present, ended, proofs, overlap, redone, clean]


def _view(record: JobRecord | None) -> dict[str, Any] | None:
    if record is None:
        return None
    proof = record.result.proof_of_work if record.result else None
    nonce, digest = (proof.nonce, proof.hash) if proof else (None, None)
    return {"status": record.status.value, "nonce": nonce, "hash": digest}


def _completions(servers: list[Server]) -> Iterator[str]:
    for server in servers:
        for line in server.log.read_text(errors="replace").splitlines():
            if " ended: completed" in line and "job pow_" in line:
                yield line.split("job ", 1)[1].split()[0]


def _verifies(record: JobRecord) -> bool:
    proof = record.result.proof_of_work if record.result else None
    if proof is None or proof.nonce is None or proof.hash is None:
        return False
    prefix = str(record.job_data.get("prefix", ""))
    digest = hashlib.sha256(f"{prefix}{proof.nonce}".encode()).hexdigest()
    zeros = len(digest) - len(digest.lstrip("0"))
    return digest == proof.hash and zeros >= int(record.job_data.get("difficulty", 64))


def _check_attempts(record: JobRecord, overlap: Invariant) -> None:
    spans = [
        (a.instance, a.started_at.timestamp(), (a.ended_at or record.updated_at).timestamp())
        for a in record.attempts
    ]
    for i, (who, start, end) in enumerate(spans):
        for other, start2, end2 in spans[i + 1 :]:
            if who == other:
                continue
            both = min(end, end2) - max(start, start2)
            overlap.check(
                both <= LEASE_SECONDS,
                f"job {record.job_id}: instances {who} and {other} hashed it together {both:.1f}s",
            )


def _check_redone(
    records: list[JobRecord],
    faults: list[Fault],
    ledger: Ledger,
    redone: Invariant,
    t0_wall: float,
) -> None:
    """Progress that a job's server showed a client at least one checkpoint interval before
    a kill or freeze hit that server is in the checkpoint the job resumed from: only the
    last interval's hashes are done again (unless the store was out, and nothing could be
    saved)."""
    hits = [f for f in faults if f.kind in ("kill", "freeze") and f.pid is not None]
    outages = [f for f in faults if f.kind not in ("kill", "freeze")]
    interval = DEBOUNCE_SECONDS + CHECKPOINT_SLACK_SECONDS
    shown = collections.defaultdict(list)
    for job_id, owner, hashes, when in ledger.seen_running:
        shown[job_id, owner].append((when, hashes))
    for record in records:
        for attempt in record.attempts:
            if attempt.outcome != "interrupted" or attempt.ended_at is None:
                continue
            ended = attempt.ended_at.timestamp()
            pid = int(str(attempt.instance or "0-").split("-")[0])
            hit = next((f for f in hits if f.pid == pid and t0_wall + f.at >= ended - 0.5), None)
            resumed = next((r for r in record.recoveries if r.at.timestamp() >= ended), None)
            if hit is None or resumed is None:
                continue  # a graceful stop, or not resumed (JOBS_MAX_RECOVERIES)
            latest = t0_wall + hit.at - interval
            began = attempt.started_at.timestamp()
            views = shown[record.job_id, attempt.instance]
            seen = [(when, h) for when, h in views if began <= when <= latest]
            if not seen:
                continue
            first = min(when for when, _ in seen) - t0_wall
            if any(_overlaps(o, first, hit.at) for o in outages):
                continue  # the store was out meanwhile: no checkpoint could be saved then
            most = max(h for _, h in seen)
            redone.check(
                most <= resumed.hashes,
                f"job {record.job_id}: showed {most:,} hashes at least {interval:g} s before "
                f"a {hit.kind} at {hit.at:.1f} s, resumed from {resumed.hashes:,}",
            )


def _overlaps(fault: Fault, start: float, end: float) -> bool:
    """Whether a store fault, or the reconnecting after it, fell between start and end."""
    return fault.at <= end and start <= fault.at + fault.seconds + STORE_RECOVERY_SECONDS


# -- the run ---------------------------------------------------------------------------------


async def chaos(args: argparse.Namespace) -> int:
    root = Path(tempfile.mkdtemp(prefix="pow-chaos-"))
    rng = random.Random(args.seed)
    print(f"chaos: seed {args.seed}, {args.seconds:g} s, {args.backend}, in {root}", flush=True)
    ledger = Ledger(root / "clients.jsonl")
    async with open_backend(args.backend, root) as store:
        env = server_env(store, args.recovery)
        servers = [
            Server(i, _free_port(), env, store.data_dir, root / f"server-{i}.log")
            for i in range(args.servers)
        ]
        try:
            return await _run(args, root, rng, ledger, store, servers)
        finally:
            for server in servers:  # whatever happened, no server of ours lives on
                if server.proc is not None and server.proc.poll() is None:
                    server.freeze(False)
                    server.kill()


async def _run(
    args: argparse.Namespace,
    root: Path,
    rng: random.Random,
    ledger: Ledger,
    store: Store,
    servers: list[Server],
) -> int:
    for server in servers:
        await server.start()
    t0, t0_wall = time.monotonic(), time.time()
    faults_end = t0 + max(10.0, args.seconds - SETTLE_SECONDS)
    faults = Faults(rng, store, servers, t0)
    clients = Clients(servers, ledger, args.seed)
    print("faults:", flush=True)
    async with anyio.create_task_group() as tg:
        tg.start_soon(faults.run, faults_end)
        for index in range(args.clients):
            tg.start_soon(clients.run, index, faults_end)
    for server in servers:  # the schedule may end mid-fault: everything runs again
        if server.frozen:
            server.freeze(False)
    print("faults stopped; settling", flush=True)
    lease = Invariant("every job ends, is paused, or is live and moving after the faults")
    await check_progress(store, servers, lease)
    # In a thread: the proxy runs on this event loop, and a stopping server needs it.
    exits = [await anyio.to_thread.run_sync(server.stop) for server in servers]
    stopped = Invariant("every server stops cleanly (exit status 0)")
    for server, code in zip(servers, exits, strict=True):
        stopped.check(code == 0, f"server {server.index} exited with {code}")
    async with open_store(store.settings(), serving=False) as reader:
        records = await all_jobs(reader)
    invariants = [
        lease,
        stopped,
        *check_all(records, ledger, faults.done, servers, args.recovery, t0_wall),
    ]
    return report(args, root, ledger, faults.done, records, invariants)


def report(
    args: argparse.Namespace,
    root: Path,
    ledger: Ledger,
    faults: list[Fault],
    records: list[JobRecord],
    invariants: list[Invariant],
) -> int:
    kinds = collections.Counter(f.kind for f in faults)
    statuses = collections.Counter(r.status.value for r in records)
    breaches = sum(len(i.breaches) for i in invariants)
    print(f"\nfaults injected: {len(faults)} ({_counts(kinds)})")
    print(f"operations: {sum(ledger.ops.values())} ({_counts(ledger.ops)})")
    print(f"jobs: {len(records)} ({_counts(statuses)}), acknowledged {len(ledger.acked)}")
    print("invariants:")
    for invariant in invariants:
        verdict = "ok" if not invariant.breaches else f"{len(invariant.breaches)} BREACHES"
        print(f"  {invariant.name}: {invariant.checked} checked, {verdict}")
        for breach in invariant.breaches[:10]:
            print(f"      {breach}")
    summary = {
        "seed": args.seed,
        "backend": args.backend,
        "seconds": args.seconds,
        "faults": dict(kinds),
        "operations": dict(ledger.ops),
        "jobs": dict(statuses),
        "invariants": [asdict(i) for i in invariants],
        "breaches": breaches,
        "fault_log": [asdict(f) for f in faults],
    }
    (root / "summary.json").write_text(json.dumps(summary, indent=1))
    print(f"\n{breaches} breaches; logs and summary in {root}")
    print(f"replay: make chaos SECONDS={args.seconds:g} SEED={args.seed} BACKEND={args.backend}")
    if not breaches and not args.keep:
        shutil.rmtree(root, ignore_errors=True)
    return 1 if breaches else 0


def _counts(counter: collections.Counter[str]) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(counter.items())) or "none"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=120.0)
    parser.add_argument("--seed", type=int, default=None, help="default: drawn, and printed")
    parser.add_argument("--backend", choices=["sqlite", "postgresql", "json"], default="sqlite")
    parser.add_argument("--servers", type=int, default=3, choices=[2, 3])
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--recovery", choices=["resume", "fail"], default="resume")
    parser.add_argument("--keep", action="store_true", help="keep the logs even when all is ok")
    args = parser.parse_args(argv)
    if args.seed is None:
        args.seed = random.SystemRandom().randrange(1_000_000)
    return anyio.run(chaos, args)


if __name__ == "__main__":
    sys.exit(main())
