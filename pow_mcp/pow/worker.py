"""The hashing worker process: receives chunks over a pipe, returns results.

A worker exits when told to, when its pipe closes, or soon after its parent dies (even by
SIGKILL), so it never outlives the server. How it notices the parent's death depends on
the OS (`parent_watch`): on Linux it polls `getppid()`, which changes when the parent
dies; elsewhere a thread waits on the parent's sentinel that multiprocessing hands every
child it spawns: a pipe whose other end only the parent holds, which the OS closes when
the parent dies (POSIX), or a handle to the parent process (Windows). `POW_PORTABLE=1`
selects the sentinel on Linux too, so that code runs in the tests here.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import sys
import threading
import time
from collections.abc import Mapping
from multiprocessing.connection import Connection

from pow_mcp.pow.kernels import SearchKernel, get_kernel
from pow_mcp.pow.layout import LAYOUT_LATEST

PARENT_CHECK_SECONDS = 0.5
CALIBRATION_SECONDS = 0.05
CALIBRATION_PREFIX = b"pow-mcp-calibration-"

# Wire formats (plain tuples: they pickle fastest).
#   parent -> worker: (job_id, prefix, start, count, difficulty, layout), or None to stop
#       (start and count are positions of the layout)
#   worker -> parent: ("ready", pid, hashes_per_second) once, then for each chunk
#       (job_id, start, found_nonce, hashes, best_nonce, best_zeros, best_hash, seconds)


def parent_watch(environ: Mapping[str, str] | None = None) -> str:
    """How a worker notices that its parent died: "getppid" or "sentinel"."""
    environ = os.environ if environ is None else environ
    portable = environ.get("POW_PORTABLE", "").strip().lower() in ("1", "true", "yes", "on")
    return "getppid" if sys.platform == "linux" and not portable else "sentinel"


def _watch_parent(parent_pid: int) -> None:
    """Return once the parent process is gone (run in a daemon thread)."""
    parent = multiprocessing.parent_process()
    if parent_watch() == "sentinel" and parent is not None:
        parent.join()  # waits on the sentinel: returns when the parent has died
        return
    # getppid() changes when the parent dies, however it died: the child is reparented.
    while os.getppid() == parent_pid:
        time.sleep(PARENT_CHECK_SECONDS)


def _exit_with_parent(parent_pid: int) -> None:
    _watch_parent(parent_pid)
    os._exit(1)


def _detach_stdio() -> None:
    # fd 1 may be the MCP stdio channel: a stray write from a worker must not corrupt it.
    devnull = os.open(os.devnull, os.O_RDWR)
    try:
        os.dup2(2, 1)
    except OSError:  # no stderr (a Windows child may have no standard handles)
        os.dup2(devnull, 1)
    os.dup2(devnull, 0)
    os.close(devnull)


def measure_rate(kernel: SearchKernel) -> float:
    """Hashes per second of one thread of this process with `kernel` (about 50 ms)."""
    count, start = 1024, 0
    began = time.perf_counter()
    while (elapsed := time.perf_counter() - began) < CALIBRATION_SECONDS:
        kernel.search(CALIBRATION_PREFIX, start, count, 64, LAYOUT_LATEST)
        start += count
        count *= 2
    return start / elapsed


def worker_main(conn: Connection, parent_pid: int, kernel_name: str) -> None:
    """Entry point of a worker process."""
    _detach_stdio()
    # Ctrl-C reaches the whole process group; the parent decides how to stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    threading.Thread(target=_exit_with_parent, args=(parent_pid,), daemon=True).start()
    kernel = get_kernel(kernel_name)
    conn.send(("ready", os.getpid(), measure_rate(get_kernel(kernel_name))))
    while True:
        try:
            task = conn.recv()
        except (EOFError, OSError):
            return
        if task is None:
            return
        job_id, prefix, start, count, difficulty, layout = task
        began = time.perf_counter()
        r = kernel.search(prefix, start, count, difficulty, layout)
        seconds = time.perf_counter() - began
        try:
            conn.send(
                (
                    job_id,
                    start,
                    r.found_nonce,
                    r.hashes,
                    r.best_nonce,
                    r.best_zeros,
                    r.best_hash,
                    seconds,
                )
            )
        except (BrokenPipeError, OSError):
            return
