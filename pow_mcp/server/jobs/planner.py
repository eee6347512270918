"""When this instance's age-based jobs hash, and in which order: `pow.policy` applied to
them together (`Planner`), and each one's view of the chain while it waits (`AgeGate`).

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

import anyio

from pow_mcp.pow.difficulty import age_difficulty, first_valid_age
from pow_mcp.pow.plan import AgeJob, Plan, PlanKind, TargetStart
from pow_mcp.pow.policy import hashing_order, plan_job, plan_jobs
from pow_mcp.pow.pool import HashingPool
from pow_mcp.server.config import Config
from pow_mcp.server.jobs.blocks import Anchor, BlockClock
from pow_mcp.server.jobs.live import LiveJob, RetryableError
from pow_mcp.server.jobs.spec import JobSpec
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


class AgeGate:
    """What an age-based job on this instance sees of the chain: its height source, its
    difficulty now, whether its plan (or TARGET_DIFFICULTY_START) says to hash, and the
    `waiting_info` that tells the agent."""

    def __init__(self, config: Config, clock: BlockClock, pool: HashingPool) -> None:
        self.config, self.clock = config, clock
        start = config.target_start
        self.planner = Planner(start, pool, config.block_time_seconds) if start.auto else None

    def join(self, job: LiveJob) -> None:
        """Plan the job with this instance's other age-based jobs (under `auto`)."""
        if self.planner is not None and job.job_id not in self.planner:
            self.planner.join(
                job.job_id,
                lambda: job.record,
                job.spec,
                lambda: self.source(job),
                shared=self.clock.url is not None,
                hashing=lambda: job.hashing,
            )

    def leave(self, job_id: str) -> None:
        if self.planner is not None:
            self.planner.leave(job_id)

    def source_fault(self, job: LiveJob) -> str | None:
        """Why the job cannot go on: its only height source has been silent past the grace."""
        if job.spec.current_block_height is not None or self.clock.url is None:
            return None  # the job's own height is extrapolated as long as it takes
        silent, grace = self.clock.silent_for(), self.config.block_height_grace_seconds
        if silent <= grace:
            return None
        return (
            f"the block height source {self.clock.url} has not answered for {silent:.0f} s "
            f"(BLOCK_HEIGHT_GRACE_SECONDS={grace:g}): {self.clock.last_error}"
        )

    def source(self, job: LiveJob) -> Anchor:
        """The polled chain height when there is one, else the height the job was given."""
        source = self.clock.anchor or job.anchor
        if source is None:
            raise RetryableError(
                "no block height: BLOCK_HEIGHT_URL gave none and the job has no "
                "current_block_height"
            )
        return source

    def update_difficulty(self, job: LiveJob) -> int:
        """Read the height once; the job's age difficulty follows from it."""
        spec = job.spec
        assert spec.block_start is not None and spec.difficulty_range is not None
        job.height = self.source(job).now()
        job.difficulty = age_difficulty(job.height - spec.block_start, spec.difficulty_range)
        return job.difficulty

    def should_start(self, job: LiveJob) -> bool:
        threshold = self.config.target_start.threshold
        if self.planner is None:
            assert threshold is not None
            return job.difficulty <= threshold
        return self.planner.plan(job.job_id).should_hash(job.height)

    def waiting_info(self, job: LiveJob) -> WaitingInfo:
        threshold = self.config.target_start.threshold
        if self.planner is None or job.job_id not in self.planner:
            start = threshold if threshold is not None else job.difficulty
            return waiting_info(job.spec, job.height, job.difficulty, start)
        plan = self.planner.plan(job.job_id)
        return plan_info(plan, job.spec, job.height, job.difficulty, self.clock_note())

    def clock_note(self) -> str | None:
        """Said in waiting_info while the height source is silent (heights extrapolated)."""
        silent = self.clock.silent_for()
        if self.clock.url is None or silent <= 2 * self.config.block_time_seconds:
            return None
        return (
            f"the block height source has not answered for {silent:.0f} s; the plan goes on "
            f"from heights extrapolated at {self.config.block_time_seconds:g} s a block"
        )

    def seconds_to_next_block(self, job: LiveJob) -> float:
        source = self.source(job)
        return source.seconds_until(source.now() + 1)

    async def next_block(self, job: LiveJob) -> None:
        """Sleep until the extrapolated height moves on, or a poll brings a new one."""
        with anyio.move_on_after(self.seconds_to_next_block(job)):
            await self.clock.wait_changed()


def waiting_info(spec: JobSpec, height: int, difficulty: int, start: int) -> WaitingInfo:
    """Where an age-based job stands: its age and difficulty now, and when it will hash."""
    assert spec.block_start is not None and spec.difficulty_range is not None
    start_age = first_valid_age(start, spec.difficulty_range) or 0
    return WaitingInfo(
        current_age=height - spec.block_start,
        current_difficulty=difficulty,
        start_difficulty=start,
        blocks_remaining=max(0, spec.block_start + start_age - height),
    )


__all__ = ["AgeGate", "PlanKind", "Planner", "plan_info", "preview", "waiting_info"]
