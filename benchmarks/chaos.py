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

This file runs a chaos run and reports it; its parts, one job each, sit beside it:
chaos_store.py (the shared store and its fault handles), chaos_servers.py (the servers),
chaos_faults.py (the fault schedule), chaos_clients.py (the clients and their ledger) and
chaos_checks.py (the invariant checker).
"""

from __future__ import annotations

import argparse
import collections
import json
import random
import shutil
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

import anyio
from chaos_checks import SETTLE_SECONDS, Invariant, check_all, check_progress
from chaos_clients import Clients, Ledger
from chaos_faults import Fault, Faults
from chaos_servers import Server, free_port, server_env
from chaos_store import Store, open_backend

from pow_mcp.store import JobRecord, open_store
from pow_mcp.store.transfer import all_jobs


async def chaos(args: argparse.Namespace) -> int:
    root = Path(tempfile.mkdtemp(prefix="pow-chaos-"))
    rng = random.Random(args.seed)
    print(f"chaos: seed {args.seed}, {args.seconds:g} s, {args.backend}, in {root}", flush=True)
    ledger = Ledger(root / "clients.jsonl")
    async with open_backend(args.backend, root) as store:
        env = server_env(store, args.recovery)
        servers = [
            Server(i, free_port(), env, store.data_dir, root / f"server-{i}.log")
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
