"""Save time and memory of the JSON job store, behind benchmarks/store.py.

Each save figure is printed with its ratio to a naive baseline measured in the same run
on the same records: `json.dumps` of them as plain dicts and one `write_text` (no temp
file, no fsync, no backup, no lock, no re-read). The store's saves are atomic and
fsynced; "create", "one progress change" and "running -> completed" are the common
saves (only the changed record is serialised, the others' cached lines are joined);
"all records changed" re-serialises every record. The open time is compared with a
bare `json.loads` of the file, and the open store's memory (tracemalloc) with the same
records held as the plain dicts `json.loads` returns.
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import statistics
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio

from store.codec import encode_line, render
from store.fileio import ensure_dir
from store.jsonfile import JsonFileJobStore
from store.locking import InstanceLock
from store.record import JobRecord, JobResult, JobStatus, Progress, ProofOfWork, utc_now


def make_records(count: int) -> list[JobRecord]:
    now = utc_now()
    records = []
    for n in range(count):
        records.append(
            JobRecord(
                job_id=f"pow_{1_704_067_200_000 + n}_{n:010d}",
                status=JobStatus.RUNNING,
                created_at=now,
                started_at=now,
                updated_at=now,
                job_data={
                    "prefix": f"5-{n}BUILD1000NONCE",
                    "difficulty": 6,
                    "priority": "normal",
                    "label": f"benchmark job {n}",
                },
                progress=Progress(hashes=16_000_000 + n, hashrate=2.5e6, best_zeros=6),
                result=JobResult(
                    proof_of_work=ProofOfWork(
                        hash="000000" + f"{n:058x}",
                        nonce=str(16_000_000 + n),
                        iterations=16_000_001 + n,
                        valid=True,
                        difficulty_met=True,
                        difficulty=6,
                        computation_time_ms=6400.5,
                    )
                ),
                owner=PEER,
                kernel="native",
            )
        )
    return records


PEER = "bench-peer"  # a live instance (this process) that owns the records


def median_seconds(action: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        action()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


async def amedian_seconds(action: Callable[[int], Any], repeat: int) -> float:
    times = []
    for i in range(repeat):
        start = time.perf_counter()
        await action(i)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def seed_file(directory: Path, records: list[JobRecord]) -> None:
    (directory / "jobs.json").write_bytes(render(encode_line(r.job_id, r) for r in records))


def allocated_by(build: Callable[[], object]) -> tuple[int, object]:
    """Bytes still allocated by what `build` returns (tracemalloc), and the object."""
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        kept = build()
        gc.collect()
        return tracemalloc.get_traced_memory()[0] - before, kept
    finally:
        tracemalloc.stop()


async def bench_size(count: int, repeat: int, base: Path | None) -> None:
    records = make_records(count)
    plain = {r.job_id: r.model_dump(mode="json") for r in records}
    with tempfile.TemporaryDirectory(dir=base) as tmp:
        directory = Path(tmp)
        naive_path = directory / "naive.json"
        naive = median_seconds(lambda: naive_path.write_text(json.dumps(plain)), repeat)
        naive_path.unlink()
        seed_file(directory, records)
        naive_load = median_seconds(
            lambda: json.loads((directory / "jobs.json").read_bytes()), repeat
        )
        # The records' owner is alive, so opening the store leaves them running.
        ensure_dir(directory / "instances")
        peer = InstanceLock(directory / "instances" / f"{PEER}.lock")
        peer.acquire()
        try:
            times = await measure_saves(directory, records, repeat)
            data = (directory / "jobs.json").read_bytes()
            naive_memory, _ = allocated_by(lambda: json.loads(data))
            memory = await store_memory(directory)
        finally:
            peer.release()

    def row(label: str, seconds: float, baseline: float) -> None:
        ratio = seconds / baseline
        print(f"  {label:<38} {seconds * 1000:8.1f} ms  {ratio:6.2f}x naive")

    print(f"{count:,} records ({len(data) / 1e6:.1f} MB file), medians:")
    print(f"  {'naive: json.dumps + write_text':<38} {naive * 1000:8.1f} ms")
    for label, seconds in times.items():
        if label.startswith("save"):
            row(label, seconds, naive)
    print(f"  {'naive: json.loads':<38} {naive_load * 1000:8.1f} ms")
    row("open: read + validate", times["open"], naive_load)
    print(
        f"  {'memory of the open store':<38} {memory / 1e6:8.1f} MB  "
        f"{memory / naive_memory:6.2f}x plain dicts ({naive_memory / 1e6:.1f} MB), "
        f"{memory / count / 1000:.1f} kB per record"
    )


async def measure_saves(directory: Path, records: list[JobRecord], repeat: int) -> dict[str, float]:
    start = time.perf_counter()
    store = await JsonFileJobStore.open(directory, debounce_seconds=3600)
    times = {"open": time.perf_counter() - start}
    fresh = make_records(repeat)

    async def create(i: int) -> None:
        await store.create(fresh[i].model_copy(update={"job_id": f"new_{i}"}))

    async def one_changed(i: int) -> None:
        await store.update(records[0].model_copy(update={"progress": Progress(hashes=i)}))
        await store.flush()

    async def finish(i: int) -> None:
        await store.update(records[1 + i].model_copy(update={"status": JobStatus.COMPLETED}))

    async def all_changed(i: int) -> float:
        for record in records[1 + repeat :]:
            await store.update(record.model_copy(update={"progress": Progress(hashes=i)}))
        start = time.perf_counter()
        await store.flush()
        return time.perf_counter() - start

    try:
        times["save: create (durable on return)"] = await amedian_seconds(create, repeat)
        times["save: one progress change + flush"] = await amedian_seconds(one_changed, repeat)
        times["save: running -> completed (durable)"] = await amedian_seconds(finish, repeat)
        times["save: all records changed + flush"] = statistics.median(
            [await all_changed(i) for i in range(3)]
        )
    finally:
        await store.close()
    return times


async def store_memory(directory: Path) -> int:
    """Bytes allocated by opening the store on `directory` (tracemalloc slows the open)."""
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        store = await JsonFileJobStore.open(directory, debounce_seconds=3600)
        gc.collect()
        memory = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    await store.close()
    return memory


def main() -> None:
    parser = argparse.ArgumentParser(
        description="Save time and memory of the JSON job store (see store/bench.py)."
    )
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--dir", type=Path, default=None, help="where to write (default: tmp)")
    args = parser.parse_args()
    logging.getLogger("store").setLevel(logging.ERROR)  # the jobs each run leaves behind
    for count in args.sizes:
        anyio.run(bench_size, count, args.repeat, args.dir)
