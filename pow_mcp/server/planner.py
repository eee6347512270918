"""When this instance's age-based jobs hash, and in which order: `pow.policy` applied.

The runner asks `should_hash` once per block for each waiting age-based job; the plans are
made again when the height moves, a job joins or leaves, or the pool's measured rate has
moved by more than `RATE_CHANGE` since the last plan. Jobs on the chain's polled height
(`BLOCK_HEIGHT_URL`) are planned together, so the pool goes first to the job whose proof
can be valid soonest; a job that only has the height it was given is planned alone.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from pow_mcp.pow.difficulty import age_difficulty
from pow_mcp.pow.plan import AgeJob, Plan, PlanKind, TargetStart
from pow_mcp.pow.policy import hashing_order, plan_job, plan_jobs
from pow_mcp.pow.pool import HashingPool
from pow_mcp.server.blocks import Anchor
from pow_mcp.server.spec import JobSpec
from pow_mcp.store.record import JobRecord, WaitingInfo

log = logging.getLogger(__name__)

RATE_CHANGE = 0.15  # a measured rate this much off the planned one makes new plans


@dataclass
class _Member:
    record: Callable[[], JobRecord]  # the job's live record
    spec: JobSpec
    source: Callable[[], Anchor]  # where its height comes from
    shared: bool  # on the chain clock (planned with the others) or on its own height
    hashing: Callable[[], bool]


class Planner:
    """The plans of the age-based jobs this instance runs (TARGET_DIFFICULTY_START=auto)."""

    def __init__(self, start: TargetStart, pool: HashingPool, block_time: float) -> None:
        self.start = start
        self.pool = pool
        self.block_time = block_time
        self._members: dict[str, _Member] = {}
        self._plans: dict[str, Plan] = {}
        self._committed: set[str] = set()
        self._planned_at: tuple[int, ...] | None = None  # the heights of the last plans
        self._planned_rate = 0.0
        self._dirty = True

    def join(
        self,
        job_id: str,
        record: Callable[[], JobRecord],
        spec: JobSpec,
        source: Callable[[], Anchor],
        *,
        shared: bool,
        hashing: Callable[[], bool],
    ) -> None:
        self._members[job_id] = _Member(record, spec, source, shared, hashing)
        self._dirty = True

    def __contains__(self, job_id: str) -> bool:
        return job_id in self._members

    def leave(self, job_id: str) -> None:
        if self._members.pop(job_id, None) is not None:
            self._plans.pop(job_id, None)
            self._committed.discard(job_id)
            self._dirty = True

    def plan(self, job_id: str) -> Plan:
        """The job's plan now (made again first if anything it depends on moved)."""
        self._refresh()
        return self._plans[job_id]

    def _refresh(self) -> None:
        heights = tuple(m.source().now() for m in self._members.values())
        rate = self.pool.hashrate
        moved = abs(rate - self._planned_rate) > RATE_CHANGE * max(self._planned_rate, 1.0)
        if self._dirty or moved or heights != self._planned_at:
            self._replan(rate)
            self._planned_at, self._planned_rate, self._dirty = heights, rate, False

    def _replan(self, rate: float) -> None:
        shared = [job_id for job_id, m in self._members.items() if m.shared]
        plans: list[Plan] = []
        if shared:
            height = self._members[shared[0]].source().now()
            jobs = [self._age_job(job_id) for job_id in shared]
            together = plan_jobs(
                jobs, height=height, hashrate=rate, block_time=self.block_time, start=self.start
            )
            plans += together
            for rank, job_id in enumerate(hashing_order(together, height)):
                if self._members[job_id].hashing():
                    self.pool.set_rank(job_id, rank)
        for job_id, member in self._members.items():
            if not member.shared:
                plans.append(
                    plan_job(
                        self._age_job(job_id),
                        height=member.source().now(),
                        hashrate=rate,
                        block_time=self.block_time,
                        start=self.start,
                    )
                )
        self._plans = {p.job_id: p for p in plans}
        self._committed |= {p.job_id for p in plans if p.committed}

    def _age_job(self, job_id: str) -> AgeJob:
        member = self._members[job_id]
        record, spec = member.record(), member.spec
        assert spec.block_start is not None and spec.difficulty_range is not None
        return AgeJob(
            job_id,
            block_start=spec.block_start,
            difficulty_range=spec.difficulty_range,
            best_zeros=record.progress.best_zeros,
            hashes=record.progress.hashes,
            priority=int(spec.rank),
            created=record.created_at.timestamp(),
            committed=job_id in self._committed,
        )


def plan_info(
    plan: Plan, spec: JobSpec, height: int, difficulty: int, note: str | None = None
) -> WaitingInfo:
    """`waiting_info` of an age-based job under `auto`: where it stands and its plan."""
    assert spec.block_start is not None and spec.difficulty_range is not None
    start_difficulty = None
    if plan.start_block is not None:
        start_age = plan.start_block - spec.block_start
        start_difficulty = age_difficulty(start_age, spec.difficulty_range)
    return WaitingInfo(
        current_age=height - spec.block_start,
        current_difficulty=difficulty,
        start_difficulty=start_difficulty,
        blocks_remaining=plan.blocks_to_start(height),
        plan=plan.kind.value,
        target_zeros=plan.target_zeros,
        start_block=plan.start_block,
        expected_valid_block=plan.median_valid_block,
        valid_by_block=plan.valid_by_block,
        note=note or plan.describe(height),
    )


def preview(
    start: TargetStart, spec: JobSpec, record: JobRecord, height: int, rate: float, block: float
) -> Plan:
    """A new job's plan as if it had the pool to itself (what start_proof_of_work shows)."""
    assert spec.block_start is not None and spec.difficulty_range is not None
    job = AgeJob(
        record.job_id,
        block_start=spec.block_start,
        difficulty_range=spec.difficulty_range,
        priority=int(spec.rank),
        created=record.created_at.timestamp(),
    )
    return plan_job(job, height=height, hashrate=rate, block_time=block, start=start)


__all__ = ["PlanKind", "Planner", "plan_info", "preview"]
