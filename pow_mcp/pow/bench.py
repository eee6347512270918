"""Hash-rate and latency measurements behind `pow-mcp bench` and benchmarks/hashrate.py.

Every figure is also printed as a ratio to a naive hashlib loop measured in the same run,
because absolute rates on shared machines drift from minute to minute. Kernels are measured
as jobs run them: positions from 0 of the latest search layout.
"""

from __future__ import annotations

import hashlib
import platform
import queue
import time
from collections.abc import Callable
from functools import partial

from pow_mcp.pow.kernels import available_kernels, get_kernel, native
from pow_mcp.pow.layout import LAYOUT_LATEST, nonce_at
from pow_mcp.pow.pool import WorkerPool, default_workers
from pow_mcp.pow.scheduler import Outcome, Priority, Progress, SearchTask

PREFIX = "5-42BUILD1000NONCE"
NEVER = 64  # a difficulty no run will meet, so every nonce is hashed
# Where kernels are timed: a job of difficulty 7-8 spends most of its hashes around here, past
# the few fast nonces of some prefix lengths (see PREFIX_CLASSES).
POSITION = 10**9

# Prefix lengths that hash differently (see pow.layout), as the issue tracker names them.
PREFIX_CLASSES = {
    "Structs-style, 18 bytes": b"5-42BUILD1000NONCE",
    "Structs-style, 23 bytes": b"9-30@2-1RAID712049NONCE",
    "50-55 bytes: 52": b"a 52-byte prefix, as long as those that paid twice: ",
    "120+ bytes: 122": b"a 122-byte prefix ".ljust(122, b"-"),
    "narrow band: 47 bytes": b"a 47-byte prefix, in the band of two blocks...:",
}


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def naive_rate(seconds: float) -> float:
    """hashes/s of `hashlib.sha256((prefix + str(n)).encode())`: the baseline."""
    n, began = 0, time.perf_counter()
    while True:
        for _ in range(20_000):
            hashlib.sha256((PREFIX + str(n)).encode()).hexdigest()
            n += 1
        elapsed = time.perf_counter() - began
        if elapsed >= seconds:
            return n / elapsed


def search_rate(search: Callable[[int, int], object], seconds: float, start: int = 0) -> float:
    """hashes/s of search(start, count) over consecutive ranges for about `seconds`."""
    position, count = start, 20_000
    began = time.perf_counter()
    while (elapsed := time.perf_counter() - began) < seconds:
        search(position, count)
        position += count
        count = min(count * 2, 50_000_000)
    return (position - start) / elapsed


def kernel_rate(
    name: str, seconds: float, prefix: bytes = PREFIX.encode(), position: int = POSITION
) -> float:
    """hashes/s of one kernel on the positions of a job from `position` on."""
    kernel = get_kernel(name)
    return search_rate(
        lambda p, n: kernel.search(prefix, p, n, NEVER, LAYOUT_LATEST), seconds, position
    )


def rounds_per_hash(engine: str, prefix: bytes, position: int = POSITION) -> float | None:
    """SHA-256 rounds a compiled engine spends per hash at `position` of a job (None: not a
    compiled engine)."""
    ext = native._ext
    if ext is None or engine not in ext.engines():
        return None
    digits = len(str(nonce_at(LAYOUT_LATEST, prefix, position)))
    return float(ext.rounds_per_hash(engine, len(prefix), digits))


def kernel_path() -> str:
    """Which kernel "auto" runs, and why, in one line."""
    chosen = get_kernel().name
    if native._ext is None:
        return (
            f"{chosen}, the slow fallback: the compiled kernel is not installed "
            f"({native._import_error}); how to get it: the last line"
        )
    return f"{chosen} (compiled engines this CPU runs: {', '.join(native._ext.engines())})"


class _Events:
    """Collects pool events in a queue for code that waits synchronously."""

    def __init__(self) -> None:
        self.queue: queue.SimpleQueue[tuple[str, Progress | Outcome]] = queue.SimpleQueue()

    def sink(self, job_id: str, event: Progress | Outcome) -> None:
        self.queue.put((job_id, event))

    def wait_for(self, match: Callable[[str, Progress | Outcome], bool]) -> float:
        while True:
            job_id, event = self.queue.get(timeout=120)
            if match(job_id, event):
                return time.perf_counter()


def pool_rate(workers: int, seconds: float, kernel: str | None = None) -> float:
    """hashes/s of a pool of `workers` processes on one long job, after a warm-up."""
    events = _Events()
    with WorkerPool(events.sink, workers=workers, kernel=kernel) as pool:
        pool.submit("bench", SearchTask(PREFIX, NEVER))
        samples: list[tuple[float, int]] = []
        deadline = time.perf_counter() + seconds + 0.5
        # At least two samples, however short `seconds` (a worker may take longer to start).
        while time.perf_counter() < deadline or len(samples) < 2:
            _, event = events.queue.get(timeout=60)
            if isinstance(event, Progress):
                samples.append((time.perf_counter(), event.hashes))
        warm = [s for s in samples if s[0] >= samples[0][0] + 0.5]
        if len(warm) < 2:  # too short a run to leave the warm-up out
            warm = samples
        (t0, h0), (t1, h1) = warm[0], warm[-1]
        pool.cancel("bench")
    return (h1 - h0) / (t1 - t0)


def latencies(workers: int, kernel: str | None = None) -> dict[str, float]:
    """Seconds for: a cancel to free the workers, and a difficulty-3 job among busy ones."""
    events = _Events()
    with WorkerPool(events.sink, workers=workers, kernel=kernel) as pool:
        for i in range(workers):
            pool.submit(f"busy{i}", SearchTask(PREFIX, 9, Priority.NORMAL))
        events.wait_for(lambda job_id, e: job_id == f"busy{workers - 1}")
        began = time.perf_counter()
        pool.submit("small", SearchTask("latency-", 3))
        small = events.wait_for(lambda j, e: j == "small" and isinstance(e, Outcome)) - began
        # Cancel every busy job, then time a 1-hash job: it runs once a worker is free.
        began = time.perf_counter()
        for i in range(workers):
            pool.cancel(f"busy{i}")
        pool.submit("after-cancel", SearchTask("latency-", 1, max_iterations=10**6))
        freed = events.wait_for(lambda j, e: j == "after-cancel" and isinstance(e, Outcome))
    return {
        "difficulty-3 job among busy jobs": small,
        "cancel until a worker is free": freed - began,
    }


def _rate_line(label: str, rate: float, baseline: float, extra: str = "") -> str:
    return f"{label:<42}{rate / 1e6:8.2f} M hashes/s  {rate / baseline:6.2f}x naive{extra}"


def run(
    seconds: float = 2.0,
    max_workers: int | None = None,
    out: Callable[[str], None] = print,
    rounds: int = 3,
) -> None:
    """Print every kernel's rate, the pool's rate at 1..max_workers, and the latencies.

    Each figure is the best of `rounds` runs, interleaved so that a noisy minute on a shared
    machine hurts every figure alike instead of one of them.
    """
    max_workers = max_workers or default_workers()
    kernel = get_kernel().name
    probes: dict[str, Callable[[], float]] = {
        "baseline: naive hashlib loop": partial(naive_rate, seconds)
    }
    for name in available_kernels():
        probes[f"kernel {name}, 1 process"] = partial(kernel_rate, name, seconds)
    for label, prefix in PREFIX_CLASSES.items():
        if prefix != PREFIX.encode():
            probes[f"kernel {kernel}, {label}"] = partial(kernel_rate, kernel, seconds, prefix)
    for n in range(1, max_workers + 1):
        label = f"pool {kernel}, {n} worker{'s' if n > 1 else ''}"
        probes[label] = partial(pool_rate, n, seconds)
    best = dict.fromkeys(probes, 0.0)
    for _ in range(rounds):
        for label, probe in probes.items():
            best[label] = max(best[label], probe())
    out(f"CPU: {cpu_model()} ({default_workers()} logical CPUs); best of {rounds} rounds")
    out(f"kernel: {kernel_path()}")
    out(
        f'kernels hash the prefix "{PREFIX}" unless a prefix class is named, from position '
        f"{POSITION:,} of the latest layout"
    )
    baseline = best.pop("baseline: naive hashlib loop")
    out(_rate_line("baseline: naive hashlib loop", baseline, baseline))
    single = best.get(f"pool {kernel}, 1 worker", 0.0)
    for label, rate in best.items():
        extra = f"  {rate / single:5.2f}x 1 worker" if label.startswith("pool") and single else ""
        if label.startswith("kernel"):
            engine = label.split()[1].rstrip(",")
            hashed = next((p for c, p in PREFIX_CLASSES.items() if label.endswith(c)), None)
            rounds_left = rounds_per_hash(engine, hashed or PREFIX.encode())
            extra = f"  {rounds_left:5.1f} rounds/hash" if rounds_left else ""
        out(_rate_line(label, rate, baseline, extra))
    for label, value in latencies(max_workers).items():
        out(f"latency: {label:<40}{value * 1000:6.0f} ms")
    if native._ext is None:  # last, where it is read: these figures are the slow fallback's
        out(f"kernel: hashlib, the slow fallback. {native.FAST_PATH_HELP}.")
