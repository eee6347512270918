"""Hash-rate and latency measurements behind `pow-mcp bench` and benchmarks/hashrate.py.

Every figure is also printed as a ratio to a naive hashlib loop measured in the same run,
because absolute rates on shared machines drift from minute to minute.
"""

from __future__ import annotations

import hashlib
import platform
import queue
import time
from collections.abc import Callable
from functools import partial

from pow.kernel import available_kernels, get_kernel
from pow.pool import WorkerPool, default_workers
from pow.scheduler import Outcome, Priority, Progress, SearchTask

PREFIX = "5-42BUILD1000NONCE"
NEVER = 64  # a difficulty no run will meet, so every nonce is hashed


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


def kernel_rate(name: str, seconds: float) -> float:
    kernel = get_kernel(name)
    prefix, start, count = PREFIX.encode(), 0, 20_000
    began = time.perf_counter()
    while (elapsed := time.perf_counter() - began) < seconds:
        kernel.search(prefix, start, count, NEVER)
        start += count
        count = min(count * 2, 50_000_000)
    return start / elapsed


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
        while time.perf_counter() < deadline:
            _, event = events.queue.get(timeout=60)
            if isinstance(event, Progress):
                samples.append((time.perf_counter(), event.hashes))
        warm = [s for s in samples if s[0] >= samples[0][0] + 0.5] or samples
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
    return f"{label:<34}{rate / 1e6:8.2f} M hashes/s  {rate / baseline:6.2f}x naive{extra}"


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
    for n in range(1, max_workers + 1):
        label = f"pool {kernel}, {n} worker{'s' if n > 1 else ''}"
        probes[label] = partial(pool_rate, n, seconds)
    best = dict.fromkeys(probes, 0.0)
    for _ in range(rounds):
        for label, probe in probes.items():
            best[label] = max(best[label], probe())
    out(f"CPU: {cpu_model()} ({default_workers()} logical CPUs); best of {rounds} rounds")
    baseline = best.pop("baseline: naive hashlib loop")
    out(_rate_line("baseline: naive hashlib loop", baseline, baseline))
    single = best.get(f"pool {kernel}, 1 worker", 0.0)
    for label, rate in best.items():
        extra = f"  {rate / single:5.2f}x 1 worker" if label.startswith("pool") and single else ""
        out(_rate_line(label, rate, baseline, extra))
    for label, value in latencies(max_workers).items():
        out(f"latency: {label:<40}{value * 1000:6.0f} ms")
