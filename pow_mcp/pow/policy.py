"""When age-based jobs hash, and in which order: the pure policy behind TARGET_DIFFICULTY_START.

A Structs proof with z leading zeros is accepted from the first block whose age difficulty is
at most z, and the difficulty falls as blocks pass. A fast pool therefore need not wait for a
low difficulty: it can aim for more zeros and have a proof that is valid much sooner. This
module decides, for each age-based job, which proof to aim for and when to start hashing. It
reads no clock and does no I/O: heights, block time and hash rate are arguments, so the job
manager can call it as often as it likes and tests can check it exactly.

One job's plan (the model, ``auto``, a number N) is `pow.plan`; this module makes the plans of
all the age-based jobs on one pool, each in its turn, and says which of them hash at a height.

Several jobs on one pool. The order (`rank`) is priority first, then the block by which the
job's proof could be valid if it had the whole pool, then oldest. Plans are made in that order,
each on the blocks the plans ahead of it leave free. A job whose plan was pushed back by the
jobs ahead of it is `opportunistic`: it also hashes on pool time that no plan counts on, for a
chance at the earlier proof. `hashing_order` lists the jobs to hash at a height, planned
hashing first and opportunistic hashing after it, each by rank; the pool serves them strictly
in that order (each free worker takes a chunk of the first job listed).

Once a job's planned hashing has begun it is `committed`: it keeps hashing until its proof is
valid (SPEC: it keeps improving its best proof until then), even if a later plan, made after
the measured rate dropped say, would start it later. The caller feeds `Plan.committed` back
as `AgeJob.committed` at the next call.

The manager calls `plan_jobs` once per block and whenever a job arrives or finishes or the
measured rate changes, hashes the jobs `hashing_order` lists, and shows each waiting job's
`waiting_info` to the agent::

    from pow_mcp.pow.plan import AgeJob, TargetStart
    from pow_mcp.pow.policy import hashing_order, plan_jobs

    start = TargetStart.parse(os.environ.get("TARGET_DIFFICULTY_START", "auto"))
    jobs = [AgeJob("pow_1", block_start=1000, difficulty_range=1800, hashes=0, best_zeros=0)]
    plans = plan_jobs(jobs, height=1010, hashrate=80e6, block_time=5.0, start=start)
    plans[0].start_block, plans[0].target_zeros, plans[0].valid_by_block  # 1181, 9, 1695
    hashing_order(plans, 1010)  # []: nothing needs the pool before block 1181
    plans[0].waiting_info(1010)  # {"plan": "auto", "target_zeros": 9, "start_block": 1181, ...}
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import replace

from pow_mcp.pow.difficulty import validate_range
from pow_mcp.pow.plan import (
    AUTO,
    DEFAULT_CONFIDENCE,
    MIN_HASHES_PER_BLOCK,
    AgeJob,
    Capacity,
    Plan,
    PlanContext,
    PlanKind,
    TargetStart,
)
from pow_mcp.pow.scheme import MAX_DIFFICULTY


def plan_job(
    job: AgeJob,
    *,
    height: int,
    hashrate: float | None,
    block_time: float,
    start: TargetStart = AUTO,
    confidence: float = DEFAULT_CONFIDENCE,
) -> Plan:
    """The plan of one job that gets `hashrate` hashes/s (its share of the pool) alone."""
    return plan_jobs(
        [job],
        height=height,
        hashrate=hashrate,
        block_time=block_time,
        start=start,
        confidence=confidence,
    )[0]


def plan_jobs(
    jobs: Iterable[AgeJob],
    *,
    height: int,
    hashrate: float | None,
    block_time: float,
    start: TargetStart = AUTO,
    confidence: float = DEFAULT_CONFIDENCE,
) -> list[Plan]:
    """Plans of the age-based jobs sharing one pool of `hashrate` hashes/s, in pool order.

    `hashrate` None or about 0 means not measured yet. `height` is the current block height;
    the current block counts as a whole block of hashing.
    """
    todo = list(jobs)
    _check_inputs(todo, height, block_time, confidence)
    per_block = 0.0 if hashrate is None else hashrate * block_time
    if not per_block >= MIN_HASHES_PER_BLOCK:  # also NaN: no rate to plan with
        per_block = 0.0
    ctx = PlanContext(height, per_block, start, confidence)
    alone = {job.job_id: ctx.plan(job, Capacity()) for job in todo}
    order = sorted(todo, key=lambda job: _order_key(job, alone[job.job_id], height))
    capacity = Capacity()
    plans = []
    for rank, job in enumerate(order):
        plan = ctx.plan(job, capacity)
        pushed_back = _later(plan.valid_by_block, alone[job.job_id].valid_by_block)
        committed = job.committed or (plan.kind is PlanKind.AUTO and plan.planned_now(height))
        eager = plan.kind is PlanKind.AUTO and (committed or pushed_back)
        plans.append(replace(plan, rank=rank, opportunistic=eager, committed=committed))
    return plans


def hashing_order(plans: Sequence[Plan], height: int) -> list[str]:
    """Ids of the jobs that should hash at `height`, in the order the pool serves them.

    Jobs whose planned hashing has begun come first, by rank; opportunistic hashing comes
    after all of them, so it never takes a block another job's plan counts on.
    """
    hashing = [p for p in plans if p.should_hash(height)]
    hashing.sort(key=lambda p: (not p.planned_now(height), p.rank))
    return [p.job_id for p in hashing]


# -- internals -----------------------------------------------------------------------------


def _check_inputs(jobs: list[AgeJob], height: int, block_time: float, confidence: float) -> None:
    if height < 0:
        raise ValueError(f"height must be >= 0, got {height}")
    if not block_time > 0:
        raise ValueError(f"block_time must be > 0, got {block_time}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be between 0 and 1, got {confidence}")
    seen: set[str] = set()
    for job in jobs:
        if job.job_id in seen:
            raise ValueError(f"job {job.job_id} is listed twice")
        seen.add(job.job_id)
        validate_range(job.difficulty_range)
        if job.hashes < 0 or not 0 <= job.best_zeros <= MAX_DIFFICULTY:
            raise ValueError(
                f"job {job.job_id}: hashes must be >= 0 and best_zeros 0..{MAX_DIFFICULTY}"
            )


def _order_key(job: AgeJob, alone: Plan, height: int) -> tuple[int, int, float, str]:
    soonest = height if alone.valid_by_block is None else alone.valid_by_block
    return (-job.priority, soonest, job.created, job.job_id)


def _later(planned: int | None, alone: int | None) -> bool:
    return planned is not None and alone is not None and planned > alone
