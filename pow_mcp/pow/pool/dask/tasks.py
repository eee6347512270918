"""What runs on the Dask workers: measuring a thread's rate, searching a chunk, and the setup
of the workers of `POW_CLUSTER=local`.

Module-level functions: Dask pickles them by reference, so the workers run the code of the
pow-mcp they have installed (which must know the job's layout: checked at calibration).
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Iterator
from typing import Any

from dask.context import thread_state  # where the worker puts the running task's key
from distributed import WorkerPlugin, get_worker

from pow_mcp.pow.kernels import SearchKernel, get_kernel
from pow_mcp.pow.kernels.base import search_runs
from pow_mcp.pow.layout import LAYOUTS
from pow_mcp.pow.worker import measure_rate

_kernels: dict[str | None, SearchKernel] = {}

# (worker address, kernel, found_nonce, hashes, best_nonce, best_zeros, best_hash, seconds)
SearchAnswer = tuple[str, str, int | None, int, int, int, str, float]
# (worker address, kernel, hashes per second of one thread, layouts known)
CalibrationAnswer = tuple[str, str, float, tuple[int, ...]]


def _kernel(name: str | None) -> SearchKernel:
    kernel = _kernels.get(name)
    if kernel is None:
        kernel = _kernels[name] = get_kernel(name)
    return kernel


def calibrate_task(kernel_name: str | None) -> CalibrationAnswer:
    """On a worker: which kernel it uses and how fast one of its threads hashes."""
    kernel = _kernel(kernel_name)
    return (get_worker().address, kernel.name, measure_rate(kernel), LAYOUTS)


def _cancelled() -> bool:
    """Whether the task running in this thread was cancelled: its job ended, or its client
    (the server) went away. Dask cannot interrupt a running task; it marks it "cancelled"
    in the worker's state (the worker state machine, documented but not a stable API). If
    that cannot be read, chunks simply run to their end."""
    try:
        task = get_worker().state.tasks.get(thread_state.key)
    except Exception:
        return False
    return task is not None and task.state == "cancelled"


def search_task(
    prefix: bytes,
    start: int,
    count: int,
    difficulty: int,
    layout: int,
    kernel_name: str | None,
    slices: int = 1,
) -> SearchAnswer:
    """On a worker: hash one chunk (positions of the job's layout) with its kernel, in
    `slices` pieces, stopping early once the task is cancelled (its answer is then
    dropped: an answer that stopped short is never taken for the whole chunk)."""
    kernel = _kernel(kernel_name)
    size = -(-count // max(1, slices))

    def pieces() -> Iterator[tuple[int, int]]:
        for offset in range(0, count, size):
            if offset and _cancelled():
                return
            yield (start + offset, min(size, count - offset))

    began = time.perf_counter()
    r = search_runs(
        pieces(), difficulty, lambda first, n: kernel.search(prefix, first, n, difficulty, layout)
    )
    seconds = time.perf_counter() - began
    address = get_worker().address
    return (
        address,
        kernel.name,
        r.found_nonce,
        r.hashes,
        r.best_nonce,
        r.best_zeros,
        r.best_hash,
        seconds,
    )


class LocalWorkerSetup(WorkerPlugin):
    """For the workers of `POW_CLUSTER=local`, which are this server's children."""

    def setup(self, worker: Any) -> None:
        # fd 1 may be the MCP stdio channel: a stray write from a worker must not corrupt it.
        os.dup2(2, 1)
        # Ctrl-C reaches the whole process group; the server decides how its workers stop.
        with contextlib.suppress(ValueError):  # not the main thread: nothing to ignore there
            signal.signal(signal.SIGINT, signal.SIG_IGN)
