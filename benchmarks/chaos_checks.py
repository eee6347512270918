"""The chaos run's invariant checker: after the faults, the store, the clients' ledger and the
servers' logs against what the run promises (each invariant counts its cases and breaches)."""

from __future__ import annotations

import collections
import hashlib
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import anyio
from chaos_clients import Ledger
from chaos_faults import Fault
from chaos_servers import DEBOUNCE_SECONDS, Server
from chaos_store import LEASE_SECONDS, Store

from pow_mcp.store import JobRecord, JobStatus, open_store
from pow_mcp.store.record import TERMINAL
from pow_mcp.store.transfer import all_jobs

CHECKPOINT_SLACK_SECONDS = 1.0  # a worker reports progress about every 0.1 s; timers, load
SETTLE_SECONDS = 45.0  # at the end, without faults, for the queue to drain
# After a store fault ends: reconnecting, the progress writer's pause before it retries, a
# transaction whose round trips were each slowed down.
STORE_RECOVERY_SECONDS = 5.0


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
