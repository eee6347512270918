"""The server's use of the time-to-proof policy: plans per job, made again when something
moves, and the pool's order of the jobs that hash (an in-process pool stand-in)."""

from __future__ import annotations

from typing import Any

from pow_mcp.pow.plan import AUTO
from pow_mcp.pow.policy import hashing_order
from pow_mcp.server.jobs.blocks import Anchor
from pow_mcp.server.jobs.planner import Planner, plan_info
from pow_mcp.server.jobs.spec import JobSpec
from pow_mcp.store import JobStatus
from tests.store_helpers import make_record

RANGE = 1800.0


class RankedPool:
    """What the planner uses of a pool: its measured rate, and the order it is told."""

    def __init__(self, hashrate: float) -> None:
        self.hashrate = hashrate
        self.ranks: dict[str, int] = {}

    def set_rank(self, job_id: str, rank: int) -> None:
        self.ranks[job_id] = rank


def join(planner: Planner, chain: list[Anchor], block_start: int, hashing: bool = True) -> str:
    spec = JobSpec(prefix=f"p{block_start}-", difficulty_range=RANGE, block_start=block_start)
    record = make_record(JobStatus.RUNNING)
    planner.join(
        record.job_id,
        lambda: record,
        spec,
        lambda: chain[0],
        shared=True,
        hashing=lambda: hashing,
    )
    return record.job_id


def test_jobs_on_the_chain_clock_are_planned_together_soonest_valid_first() -> None:
    pool: Any = RankedPool(80e6)
    planner = Planner(AUTO, pool, block_time=5.0)
    chain = [Anchor(10_500, 5.0)]
    later = join(planner, chain, block_start=10_000)
    sooner = join(planner, chain, block_start=9_950)  # older: its proof is valid sooner
    first, second = planner.plan(sooner), planner.plan(later)
    assert first.rank == 0 and second.rank == 1
    assert first.start_block is not None and second.start_block is not None
    assert pool.ranks == {}  # nothing hashes before its planned start
    chain[0] = Anchor(max(first.start_block, second.start_block), 5.0)  # blocks pass
    height = chain[0].now()
    plans = [planner.plan(sooner), planner.plan(later)]
    assert all(p.should_hash(height) for p in plans)
    order = hashing_order(plans, height)
    assert pool.ranks == {job_id: rank for rank, job_id in enumerate(order)}  # the pool's order

    planner.leave(sooner)
    assert sooner not in planner and planner.plan(later).rank == 0


def test_a_new_plan_follows_a_rate_that_moved_and_shows_in_waiting_info() -> None:
    pool: Any = RankedPool(80e6)
    planner = Planner(AUTO, pool, block_time=5.0)
    job_id = join(planner, [Anchor(10_011, 5.0)], block_start=10_000, hashing=False)
    fast = planner.plan(job_id)
    pool.hashrate = 8e6  # a tenth: the same proof needs ten times the blocks of hashing
    slow = planner.plan(job_id)
    assert slow.target_zeros is not None and fast.target_zeros is not None
    assert slow.target_zeros <= fast.target_zeros
    assert slow.valid_by_block is not None and fast.valid_by_block is not None
    assert slow.valid_by_block > fast.valid_by_block
    pool.hashrate = 8.5e6  # within 15 %: the plan stands
    assert planner.plan(job_id) is slow

    spec = JobSpec(prefix="x-", difficulty_range=RANGE, block_start=10_000)
    info = plan_info(slow, spec, height=10_011, difficulty=44)
    assert info.plan == "auto" and info.target_zeros == slow.target_zeros
    assert info.current_age == 11 and info.blocks_remaining == slow.blocks_to_start(10_011)
    assert info.note is not None and str(slow.valid_by_block) in info.note
