"""The worker pool with real processes: proofs, progress, cancel, fairness, deaths, shutdown."""

from __future__ import annotations

import contextlib
import itertools
import multiprocessing
import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import anyio
import pytest

from pow_mcp.pow.kernels import available_kernels
from pow_mcp.pow.pool import LocalPool
from pow_mcp.pow.scheduler import Checkpoint, OutcomeKind, Progress, SearchTask
from pow_mcp.pow.scheme import verify
from pow_mcp.pow.worker import parent_watch

ROOT = Path(__file__).resolve().parent.parent


def wait_for_exit(pids: list[int], timeout: float) -> list[int]:
    """Block until every pid has exited (or `timeout` passes); return those still alive."""
    fds = {}
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            fds[os.pidfd_open(pid)] = pid  # readable once the process has exited
    try:
        deadline = time.monotonic() + timeout
        pending = set(fds)
        while pending and (left := deadline - time.monotonic()) > 0:
            ready, _, _ = select.select(list(pending), [], [], left)
            pending -= set(ready)
        return [fds[fd] for fd in pending]
    finally:
        for fd in fds:
            os.close(fd)


@pytest.mark.parametrize("kernel", list(available_kernels()))
async def test_proofs_at_difficulty_1_to_5_verify(kernel: str) -> None:
    async with LocalPool.open(workers=2, kernel=kernel) as p:
        assert p.kernel_name == kernel
        for difficulty in range(1, 6):
            outcome = await p.run(f"d{difficulty}", SearchTask(f"pool-{kernel}-", difficulty))
            assert outcome.kind is OutcomeKind.FOUND and outcome.nonce is not None
            check = verify(f"pool-{kernel}-", outcome.nonce, difficulty, outcome.hash)
            assert check.valid and check.hash_matches, (difficulty, outcome)


async def test_max_iterations_is_respected_to_the_hash_with_progress() -> None:
    async with LocalPool.open(workers=2) as pool:
        limit = max(1_000_001, int(pool.hashrate))  # about a second of work, and an odd size
        seen: list[Progress] = []
        outcome = await pool.run(
            "capped", SearchTask("cap-", 64, max_iterations=limit), seen.append
        )
        assert outcome.kind is OutcomeKind.EXHAUSTED
        assert outcome.error == f"no proof within {limit} hashes (max_iterations reached)"
        assert outcome.progress.hashes == limit
        assert outcome.progress.checkpoint == Checkpoint(limit)
        assert len(seen) >= 2
        assert all(a.hashes < b.hashes for a, b in itertools.pairwise(seen))
        assert all(p.hashrate >= 0 for p in seen) and seen[-1].hashrate > 0


async def test_cancel_ends_the_job_and_frees_the_workers() -> None:
    async with LocalPool.open(workers=2) as pool:
        started = anyio.Event()
        handle = pool.submit("endless", SearchTask("cancel-", 64), lambda _p: started.set())
        with anyio.fail_after(30):
            await started.wait()
            pool.cancel("endless")
            outcome = await handle.wait()
            assert outcome.kind is OutcomeKind.CANCELLED
            after = await pool.run("next", SearchTask("after-cancel-", 2))
        assert after.kind is OutcomeKind.FOUND


async def test_small_job_finishes_while_hard_jobs_keep_every_worker_busy() -> None:
    async with LocalPool.open(workers=2) as pool:
        reported = {f"hard{i}": anyio.Event() for i in range(2)}

        def on_progress(job_id: str) -> None:
            reported[job_id].set()

        hard = [
            pool.submit(job_id, SearchTask(f"{job_id}-", 9), lambda _p, j=job_id: on_progress(j))
            for job_id in reported
        ]
        with anyio.fail_after(30):
            for event in reported.values():
                await event.wait()
            small = await pool.run("small", SearchTask("fair-", 3))
            assert small.kind is OutcomeKind.FOUND
            # Both hard jobs are still unfinished and still being hashed.
            assert all(h.outcome is None for h in hard)
            reported.update({job_id: anyio.Event() for job_id in reported})
            for event in reported.values():
                await event.wait()
        for h in hard:
            pool.cancel(h.job_id)
            assert (await h.wait()).kind is OutcomeKind.CANCELLED


async def test_a_sigkilled_worker_is_replaced_and_its_chunk_redone() -> None:
    async with LocalPool.open(workers=2) as pool:
        limit = max(3_000_000, int(pool.hashrate * 1.5))
        started = anyio.Event()
        handle = pool.submit(
            "survivor", SearchTask("kill-", 64, max_iterations=limit), lambda _: started.set()
        )
        with anyio.fail_after(60):
            await started.wait()
            victim = pool.pool.worker_pids()[0]
            os.kill(victim, signal.SIGKILL)
            outcome = await handle.wait()
        # Every nonce was hashed exactly once although a worker died holding a chunk.
        assert outcome.kind is OutcomeKind.EXHAUSTED
        assert (outcome.progress.hashes, outcome.progress.checkpoint) == (limit, Checkpoint(limit))
        assert pool.pool.workers_replaced == 1
        assert victim not in pool.pool.worker_pids()
        found = await pool.run("after", SearchTask("after-kill-", 4))
        assert found.kind is OutcomeKind.FOUND


async def test_a_stopped_search_resumes_without_overlap_or_gap() -> None:
    async with LocalPool.open(workers=2) as pool:
        limit = max(4_000_000, int(pool.hashrate * 2))
        task = SearchTask("pause-", 64, max_iterations=limit)
        started = anyio.Event()
        handle = pool.submit("paused", task, lambda _: started.set())
        with anyio.fail_after(60):
            await started.wait()
            pool.stop("paused")
            stopped = await handle.wait()
        assert stopped.kind is OutcomeKind.STOPPED
        first = stopped.progress
        # Every chunk handed out came back: nothing pending, and hashes == positions done.
        assert first.checkpoint.pending == () and first.hashes == first.checkpoint.position
        assert 0 < first.hashes < limit
        resumed = SearchTask(
            "pause-", 64, max_iterations=limit, checkpoint=first.checkpoint, hashes=first.hashes
        )
        with anyio.fail_after(60):
            outcome = await pool.run("paused", resumed)
        # The two parts together hashed each position of [0, limit) once.
        assert outcome.kind is OutcomeKind.EXHAUSTED
        assert outcome.progress.hashes == limit
        assert outcome.progress.checkpoint == Checkpoint(limit)
        assert outcome.progress.best_zeros >= first.best_zeros


async def test_no_child_processes_are_left_after_shutdown() -> None:
    async with LocalPool.open(workers=2) as p:
        pids = p.pool.worker_pids()
        await p.run("one", SearchTask("shutdown-", 3))
    assert multiprocessing.active_children() == []
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


def test_pow_portable_selects_the_parent_sentinel() -> None:
    assert parent_watch({"POW_PORTABLE": "1"}) == "sentinel"
    assert parent_watch({"POW_PORTABLE": "0"}) == parent_watch({}) == "getppid"


# getppid polling is Linux's own way; the sentinel (POW_PORTABLE=1) is what macOS and
# Windows use: a pipe only the parent holds, or a handle to the parent process.
@pytest.mark.parametrize("portable", ["0", "1"], ids=["getppid", "sentinel"])
def test_workers_exit_when_their_parent_is_sigkilled(portable: str) -> None:
    child = subprocess.Popen(
        [sys.executable, "-m", "tests.pool_child", "2"],
        cwd=ROOT,
        env={**os.environ, "POW_PORTABLE": portable},
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    line = child.stdout.readline().split()
    assert line[0] == "PIDS", line
    pids = [int(p) for p in line[1:]]
    child.kill()
    child.wait()
    # SPEC: each worker notices within 2 s that its parent is gone and exits.
    assert wait_for_exit(pids, timeout=2.0) == []
