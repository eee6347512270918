"""Dask clusters for the tests: a scheduler and workers as real processes, and how busy the
workers are (their CPU time), which is how the tests see whether anything still hashes."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
from distributed import Client

from tests.ports import free_port

ROOT = Path(__file__).resolve().parent.parent
IDLE = 0.25  # of one CPU: a worker below this is not hashing (a hashing one uses ~1)
WINDOW = 0.1  # seconds of CPU time per sample


class DaskProcesses:
    """`dask scheduler` and `dask worker` processes, each in its own process group."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.address = f"tcp://127.0.0.1:{self.port}"
        self.log_dir = Path(tempfile.mkdtemp(prefix="pow-dask-"))
        self.scheduler: subprocess.Popen[bytes] | None = None
        self.workers: list[subprocess.Popen[bytes]] = []

    def _start(self, name: str, *args: str) -> subprocess.Popen[bytes]:
        with open(self.log_dir / f"{name}.log", "ab") as log:
            return subprocess.Popen(
                [sys.executable, "-m", "dask", *args],
                cwd=ROOT,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=log,
                start_new_session=True,
            )

    def start_scheduler(self) -> None:
        args = ["--host", "127.0.0.1", "--port", str(self.port), "--no-dashboard"]
        self.scheduler = self._start("scheduler", "scheduler", *args)

    def start_worker(self, workers: int = 1) -> None:
        args = [self.address, "--nthreads", "1", "--nworkers", str(workers), "--no-dashboard"]
        self.workers.append(self._start("worker", "worker", *args))

    def wait_for_workers(self, n: int, timeout: float = 30.0) -> list[int]:
        """Block until the scheduler has `n` workers; their pids."""
        return worker_pids(self.address, n, timeout)

    def kill_scheduler(self) -> None:
        if self.scheduler is not None:
            _kill_group(self.scheduler)
            self.scheduler = None

    def kill_workers(self) -> None:
        for worker in self.workers:
            _kill_group(worker)
        self.workers.clear()

    def close(self) -> None:
        self.kill_workers()
        self.kill_scheduler()


def _kill_group(process: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


@contextlib.contextmanager
def dask_processes(workers: int = 1) -> Iterator[DaskProcesses]:
    cluster = DaskProcesses()
    try:
        cluster.start_scheduler()
        if workers:
            cluster.start_worker(workers)
            cluster.wait_for_workers(workers)
        yield cluster
    finally:
        cluster.close()


def worker_pids(address: str, n: int, timeout: float = 30.0) -> list[int]:
    """Pids of the `n` worker processes of the scheduler at `address` (waits for them)."""
    with Client(address, set_as_default=False, timeout=timeout) as client:
        client.wait_for_workers(n, timeout=timeout)
        pids: dict[str, int] = client.run(os.getpid)
    return sorted(pids.values())


def cpu_use(pids: list[int], window: float = WINDOW) -> list[float]:
    """Each process's CPU use over `window` seconds, in CPUs (1.0: one core all the time)."""
    procs = [psutil.Process(pid) for pid in pids]
    before = [sum(p.cpu_times()[:2]) for p in procs]
    began = time.monotonic()
    time.sleep(window)  # the measuring window, not a wait for anything
    after = [sum(p.cpu_times()[:2]) for p in procs]
    elapsed = time.monotonic() - began
    return [(b - a) / elapsed for a, b in zip(before, after, strict=True)]


def wait_until_busy(pids: list[int], timeout: float = 5.0) -> None:
    """Return once every process is seen busy in one sample (as `cpu_use` takes them): all of
    them hash. A sample can catch a hashing process short of a CPU while other tests run
    beside this one, so it samples again, up to `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        sample = cpu_use(pids)
        if all(use > IDLE for use in sample):
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"workers {pids} not all hashing within {timeout} s: {sample}")


def seconds_until_idle(pids: list[int], since: float, timeout: float = 5.0) -> float:
    """Seconds from `since` (time.monotonic()) until every process is idle (sampled)."""
    while time.monotonic() - since < timeout:
        if all(use < IDLE for use in cpu_use(pids)):
            return time.monotonic() - since  # the end of the first idle window: an upper bound
    raise AssertionError(f"workers {pids} still busy {timeout} s later: {cpu_use(pids)}")
