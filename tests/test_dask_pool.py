"""The Dask pool on real clusters (a scheduler and worker processes): proofs, cancel, a
worker killed, pause and resume, the pool's owner killed, the cluster going away.

Whether anything still hashes is read from the worker processes' CPU time, never assumed
after a sleep.
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import replace

import anyio
import pytest
from distributed import LocalCluster

from pow_mcp.pow.kernels import available_kernels
from pow_mcp.pow.pool.dask import ClusterError, DaskPool
from pow_mcp.pow.scheduler import Checkpoint, Chunk, OutcomeKind, SearchTask
from pow_mcp.pow.scheme import ActionType, structs_prefix
from tests.conftest import TIMING
from tests.dask_helpers import (
    ROOT,
    cpu_use,
    dask_processes,
    free_port,
    seconds_until_idle,
    wait_until_busy,
    worker_pids,
)

pytestmark = TIMING  # the cluster's workers' CPU time tells whether they hash

C_KERNEL = next(iter(available_kernels()))
CHUNK = 0.5  # DaskPool's default chunk_seconds: the bound on hashing after a cancel


@pytest.fixture(scope="module")
def cluster() -> Iterator[str]:
    """A cluster of 2 worker processes, shared by this module's tests; its address."""
    local = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0")
    try:
        yield local.scheduler_address
    finally:
        local.close()


def proof_ok(prefix: str, nonce: int | None, digest: str | None, difficulty: int) -> bool:
    """Checked from scratch with hashlib, not with the code under test."""
    assert nonce is not None
    expected = hashlib.sha256(f"{prefix}{nonce}".encode()).hexdigest()
    return digest == expected and expected.startswith("0" * difficulty)


async def test_generic_and_structs_proofs_verify_and_workers_use_the_c_kernel(
    cluster: str,
) -> None:
    assert C_KERNEL != "hashlib", "the C kernel is not built: the workers would not use it"
    build = structs_prefix(ActionType.STRUCT_BUILD_COMPLETE, "5-42", 1000)
    raid = structs_prefix(ActionType.PLANET_RAID_COMPLETE, "9-30", 712049, target_id="2-1")
    assert (build, raid) == ("5-42BUILD1000NONCE", "9-30@2-1RAID712049NONCE")  # the SPEC's
    jobs = [("dask-generic-", 5), (build, 5), (raid, 4)]
    async with DaskPool.open(cluster) as pool:
        assert pool.kernel_name == C_KERNEL  # as reported by every worker
        assert pool.size == 2 and pool.hashrate > 0
        for i, (prefix, difficulty) in enumerate(jobs):
            outcome = await pool.run(f"j{i}", SearchTask(prefix, difficulty))
            assert outcome.kind is OutcomeKind.FOUND
            assert proof_ok(prefix, outcome.nonce, outcome.hash, difficulty), (prefix, outcome)


async def test_cancel_stops_the_hashing_on_the_cluster_within_a_second(cluster: str) -> None:
    pids = await anyio.to_thread.run_sync(worker_pids, cluster, 2)
    async with DaskPool.open(cluster) as pool:
        hashing = anyio.Event()
        handle = pool.submit("endless", SearchTask("dask-cancel-", 64), lambda _: hashing.set())
        with anyio.fail_after(30):
            await hashing.wait()
        await anyio.to_thread.run_sync(wait_until_busy, pids)
        cancelled = time.monotonic()
        pool.cancel("endless")
        outcome = await handle.wait()
        assert outcome.kind is OutcomeKind.CANCELLED
        idle = await anyio.to_thread.run_sync(seconds_until_idle, pids, cancelled)
        assert idle < 1.0, f"the workers hashed on for {idle:.2f} s after the cancel"


async def test_a_worker_killed_mid_job_and_the_job_still_finds_a_correct_proof(
    cluster: str,
) -> None:
    # The first proof of difficulty 7 for this prefix is 114,931,472 positions deep: several
    # chunks after the kill (found with the local kernel once; the test does not rely on it).
    prefix, difficulty = "dask-kill-5-", 7
    pids = await anyio.to_thread.run_sync(worker_pids, cluster, 2)
    async with DaskPool.open(cluster) as pool:
        hashing = anyio.Event()
        handle = pool.submit("survivor", SearchTask(prefix, difficulty), lambda _: hashing.set())
        with anyio.fail_after(60):
            await hashing.wait()
            assert handle.outcome is None
            os.kill(pids[0], signal.SIGKILL)  # holding a chunk of the job: both are busy
            outcome = await handle.wait()
        assert outcome.kind is OutcomeKind.FOUND
        assert proof_ok(prefix, outcome.nonce, outcome.hash, difficulty), outcome
        assert pool.workers_lost == 1


async def test_pause_and_resume_hash_each_position_once_and_pause_takes_under_a_second(
    cluster: str,
) -> None:
    async with DaskPool.open(cluster) as pool:
        limit = int(pool.hashrate * 2.5)  # a few seconds of work in all
        task = SearchTask("dask-pause-", 64, max_iterations=limit)
        hashing = anyio.Event()
        handle = pool.submit("paused", task, lambda _: hashing.set())
        with anyio.fail_after(60):
            await hashing.wait()
            asked = time.monotonic()
            pool.stop("paused")
            stopped = await handle.wait()
        took = time.monotonic() - asked
        assert stopped.kind is OutcomeKind.STOPPED
        assert took < 1.0, f"the pause took {took:.2f} s"
        first = stopped.progress
        # Every chunk handed out came back: nothing pending, and hashes == positions done.
        assert first.checkpoint.pending == () and first.hashes == first.checkpoint.position
        assert 0 < first.hashes < limit
        resumed = replace(task, checkpoint=first.checkpoint, hashes=first.hashes)
        with anyio.fail_after(60):
            outcome = await pool.run("paused", resumed)
        # The two parts together hashed each position of [0, limit) exactly once.
        assert outcome.kind is OutcomeKind.EXHAUSTED
        assert outcome.progress.hashes == limit
        assert outcome.progress.checkpoint == Checkpoint(limit)


async def test_a_lower_rank_takes_every_chunk_handed_out_until_it_has_none_left(
    cluster: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The planner's order (HashingPool.set_rank) reaches the cluster through the pool's
    # Scheduler: which job each chunk handed out belongs to, in order, says whether it held.
    async with DaskPool.open(cluster, chunk_seconds=0.1) as pool:
        handed: list[str] = []
        next_chunk = pool._scheduler.next_chunk

        def recording(size: int, now: float) -> Chunk | None:
            chunk = next_chunk(size, now)
            if chunk is not None:
                handed.append(chunk.job_id)
            return chunk

        monkeypatch.setattr(pool._scheduler, "next_chunk", recording)
        hashing = anyio.Event()
        later = pool.submit("later", SearchTask("dask-rank-a-", 64), lambda _: hashing.set())
        with anyio.fail_after(30):
            await hashing.wait()
            pool.set_rank("later", 1)  # posted before the next job: it applies first
            sooner = SearchTask("dask-rank-b-", 64, max_iterations=int(pool.hashrate * 0.5))
            outcome = await pool.run("sooner", sooner)
            assert outcome.kind is OutcomeKind.EXHAUSTED
            pool.cancel("later")
            await later.wait()
    first = handed.index("sooner")
    last = len(handed) - 1 - handed[::-1].index("sooner")
    assert handed[first : last + 1] == ["sooner"] * (last - first + 1), handed
    assert "later" in handed[:first]  # it hashed before, and once "sooner" had no chunk left:
    assert "later" in handed[last + 1 :]


async def test_closing_the_pool_fails_its_searches_and_leaves_nothing_hashing(
    cluster: str,
) -> None:
    pids = await anyio.to_thread.run_sync(worker_pids, cluster, 2)
    async with DaskPool.open(cluster) as pool:
        hashing = anyio.Event()
        handle = pool.submit("left", SearchTask("dask-close-", 64), lambda _: hashing.set())
        with anyio.fail_after(30):
            await hashing.wait()
    closed = time.monotonic()
    outcome = await handle.wait()
    assert outcome.kind is OutcomeKind.FAILED and outcome.error == "the Dask pool was shut down"
    idle = await anyio.to_thread.run_sync(seconds_until_idle, pids, closed)
    assert idle < 1.0, f"the workers hashed on for {idle:.2f} s after the pool closed"


def test_nothing_hashes_on_the_cluster_after_its_owner_is_sigkilled(cluster: str) -> None:
    pids = worker_pids(cluster, 2)
    owner = subprocess.Popen(
        [sys.executable, "-m", "tests.dask_child", cluster],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert owner.stdout is not None
        assert owner.stdout.readline().strip() == "HASHING"
        wait_until_busy(pids)
        owner.kill()
        killed = time.monotonic()
        owner.wait()
        # The scheduler drops a dead client's tasks: no chunk starts any more, and those
        # running end with their chunk.
        idle = seconds_until_idle(pids, killed)
        assert idle < CHUNK + 0.5, f"the workers hashed on for {idle:.2f} s"
        assert all(use < 0.1 for use in cpu_use(pids, window=1.0)), "a chunk started later"
    finally:
        owner.kill()
        owner.wait()


async def test_an_unreachable_cluster_at_start_up_is_one_clear_error() -> None:
    address = f"tcp://127.0.0.1:{free_port()}"  # nothing listens there
    with anyio.fail_after(10), pytest.raises(ClusterError) as caught:
        async with DaskPool.open(address, connect_timeout=1.0):
            pass
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(f"POW_CLUSTER={address}: no Dask scheduler answered")
    assert "dask scheduler" in message and "unset POW_CLUSTER" in message


async def test_a_job_fails_when_the_cluster_stays_away_past_the_timeout() -> None:
    with dask_processes(workers=1) as procs:
        async with DaskPool.open(procs.address, cluster_timeout=1.0) as pool:
            hashing = anyio.Event()
            handle = pool.submit("stranded", SearchTask("dask-gone-", 64), lambda _: hashing.set())
            with anyio.fail_after(30):
                await hashing.wait()
                procs.kill_workers()
                procs.kill_scheduler()
                gone = time.monotonic()
                outcome = await handle.wait()
            waited = time.monotonic() - gone
    assert outcome.kind is OutcomeKind.FAILED
    assert outcome.error is not None and "POW_CLUSTER_TIMEOUT_SECONDS=1" in outcome.error
    assert 1.0 <= waited < 5.0
    # Its checkpoint keeps the chunks that were out as pending: a retry loses nothing.
    progress = outcome.progress
    assert progress.checkpoint.pending and progress.hashes == progress.checkpoint.done


async def test_a_cluster_without_workers_makes_jobs_wait_with_a_note_then_fail() -> None:
    with dask_processes(workers=0) as procs:
        async with DaskPool.open(procs.address, cluster_timeout=1.0) as pool:
            assert pool.hashrate == 0
            notes: list[str | None] = []
            handle = pool.submit(
                "idle", SearchTask("dask-none-", 3), lambda p: notes.append(p.note)
            )
            with anyio.fail_after(30):
                outcome = await handle.wait()
    assert notes and notes[0] is not None and "it has no workers" in notes[0]
    assert outcome.kind is OutcomeKind.FAILED and outcome.progress.hashes == 0
    assert outcome.error is not None and "no workers" in outcome.error
