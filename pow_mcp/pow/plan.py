"""One age-based job's plan: what the policy knows of the job, what its plan says, and the
pure maths that makes the plan on the blocks of a pool that the plans ahead of it leave free.

Like all of the policy it reads no clock and does no I/O. Which job goes first when several
share a pool, and the functions the job manager calls, are `pow.policy`.

The model. Each hash has at least z leading hex zeros with chance 16**-z, independently. A job
completes at the first block b whose difficulty d(b) its best hash so far meets, so, hashing
n(b) hashes by the end of block b, ``P(done by b) = 1 - (1 - 16**-d(b)) ** n(b)`` exactly
(the best hash only grows and the difficulty only falls, so "done by b" is just "the best hash
at b meets d(b)"). A lucky early hash is therefore already part of the figures.

``auto`` (the default) for one job: the earliest block B at which the proof is valid with
probability >= `confidence` (95 %) if the job hashed every block from now on, then the latest
start that still reaches that probability by B, so no hash is spent that B does not need.
One guard: where the curve steps by more than MEDIAN_SLACK (ranges above ~400), a rate that
makes a level likely but not 95 % likely puts B a whole level later; if the median proof of
that plan is more than MEDIAN_SLACK later than hashing from now would make it, the job starts
early enough to keep the best median as well.
Hashes the job already spent count as chances, as they did when the plan was made, so a plan
being followed keeps its target instead of slipping each block by hashes that found nothing;
only the proof in hand makes a job valid without hashing, so any other level needs at least one
more block of it.

A number N keeps its old meaning: hash from the first block whose difficulty is at most N.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum
from functools import lru_cache

from pow_mcp.pow.difficulty import age_difficulty, first_valid_age
from pow_mcp.pow.scheme import MAX_DIFFICULTY

DEFAULT_CONFIDENCE = 0.95
# A plan may make the median proof this much later (in blocks since block_start) than hashing
# from now would, to save hashes; past it, it starts early enough for the best median too.
MEDIAN_SLACK = 0.10
# Below this a rate counts as unknown; above it every count of blocks stays a finite float.
MIN_HASHES_PER_BLOCK = 1e-12
NORMAL_PRIORITY = 1  # pow.scheduler.Priority.NORMAL, as a number: no need to import the pool


@dataclass(frozen=True, slots=True)
class TargetStart:
    """TARGET_DIFFICULTY_START: ``auto`` (`threshold` None) or a difficulty N in 1..64."""

    threshold: int | None = None

    def __post_init__(self) -> None:
        if self.threshold is not None and not 1 <= self.threshold <= MAX_DIFFICULTY:
            raise ValueError(self._error(str(self.threshold)))

    @property
    def auto(self) -> bool:
        return self.threshold is None

    @classmethod
    def parse(cls, value: str | int) -> TargetStart:
        """``auto`` (any case) or an integer 1..64; ValueError naming the variable otherwise."""
        text = str(value).strip()
        if text.lower() == "auto":
            return cls()
        try:
            number = int(text)
        except ValueError:
            raise ValueError(cls._error(text)) from None
        return cls(number)

    @staticmethod
    def _error(text: str) -> str:
        return (
            f"TARGET_DIFFICULTY_START must be 'auto' or a whole number from 1 to "
            f"{MAX_DIFFICULTY}, got {text!r}"
        )

    def __str__(self) -> str:
        return "auto" if self.threshold is None else str(self.threshold)


AUTO = TargetStart()


@dataclass(frozen=True, slots=True)
class AgeJob:
    """What the policy needs to know about one unfinished age-based job."""

    job_id: str
    block_start: int
    difficulty_range: float
    best_zeros: int = 0  # leading zeros of the best hash so far (0: none yet)
    hashes: int = 0  # hashes spent on this job so far
    priority: int = NORMAL_PRIORITY  # larger goes first (pow.scheduler.Priority)
    created: float = 0.0  # creation time or sequence: among equals, older (smaller) first
    committed: bool = False  # `committed` of the job's previous plan (False for a new job)


class PlanKind(StrEnum):
    AUTO = "auto"  # planned from the hash rate
    THRESHOLD = "threshold"  # TARGET_DIFFICULTY_START=N: hash once the difficulty is <= N
    RATE_UNKNOWN = "rate_unknown"  # no measured rate yet: hash now, which measures it
    VALID = "valid"  # the best proof is already valid: complete the job now


@dataclass(frozen=True, slots=True)
class Plan:
    """One job's plan at `height`, and its place in the pool's order (`rank`, 0 first)."""

    job_id: str
    kind: PlanKind
    height: int  # the height the plan was made at
    target_zeros: int | None  # zeros the planned proof has: the difficulty at valid_by_block
    start_block: int | None  # hash from this height on (None: no more hashing needed)
    valid_by_block: int | None  # the proof is valid by here with probability >= confidence
    median_valid_block: int | None  # ... and by here with probability 1/2
    planned_hashes: float  # hashes the plan spends from start_block to valid_by_block
    confidence: float = DEFAULT_CONFIDENCE
    rank: int = 0
    opportunistic: bool = False  # also hashes on pool time that no plan counts on
    committed: bool = False  # its planned hashing has begun: it hashes until its proof is valid

    def should_hash(self, height: int) -> bool:
        """Whether the job should be hashing at `height` (hashing_order says in which order)."""
        if self.kind is PlanKind.VALID:
            return False
        return self.opportunistic or self.planned_now(height)

    def planned_now(self, height: int) -> bool:
        """Whether `height` is within the hashing the plan itself counts on."""
        if self.kind is PlanKind.RATE_UNKNOWN:
            return True
        return self.start_block is not None and height >= self.start_block

    def blocks_to_start(self, height: int) -> int:
        """Blocks until the planned start (0 once it has come or if none is planned)."""
        if self.start_block is None or self.should_hash(height):
            return 0
        return self.start_block - height

    def waiting_info(self, height: int) -> dict[str, int | float | str | None]:
        """The plan in the words `waiting_info` uses, for the agent."""
        return {
            "plan": self.kind.value,
            "target_zeros": self.target_zeros,
            "start_block": self.start_block,
            "blocks_remaining": self.blocks_to_start(height),
            "expected_valid_block": self.median_valid_block,
            "valid_by_block": self.valid_by_block,
            "confidence": self.confidence,
            "rank": self.rank,
        }

    def describe(self, height: int) -> str:
        """One line for an agent, e.g. in a waiting job's status text."""
        if self.kind is PlanKind.VALID:
            return f"its best proof is valid since block {self.valid_by_block}"
        if self.kind is PlanKind.RATE_UNKNOWN:
            return "hashing now: the pool has no measured hash rate yet to plan with"
        if self.start_block is None:
            when = "its best proof needs no more hashing"
        elif self.should_hash(height):
            when = "hashing now"
        else:
            when = f"hashing starts at block {self.start_block} (in {self.start_block - height})"
        if self.valid_by_block is None:
            return f"{when}; no measured hash rate yet to say when its proof will be valid"
        return (
            f"{when}, aiming for {self.target_zeros} zeros: valid by block "
            f"{self.valid_by_block} ({self.confidence:.0%} likely), probably by block "
            f"{self.median_valid_block}"
        )


def valid_probability(job: AgeJob, *, block: int, hashes: float) -> float:
    """P(the job's proof is valid at `block`) once it has spent `hashes` hashes in all.

    Counted ex ante, as plans count: earlier hashes are chances, not known failures.
    """
    zeros = age_difficulty(block - job.block_start, job.difficulty_range)
    if job.best_zeros >= zeros:
        return 1.0
    return -math.expm1(hashes * math.log1p(-(16.0**-zeros)))


# -- making a plan (pow.policy calls these in the pool's order) ----------------------------


@lru_cache(maxsize=512)
def _first_ages(difficulty_range: float) -> tuple[int, ...]:
    """first_valid_age(z) for z = 0..64 (index 0 unused): the curve, computed once per range."""
    ages = [first_valid_age(z, difficulty_range) for z in range(1, MAX_DIFFICULTY + 1)]
    return (0, *(age if age is not None else 0 for age in ages))


@lru_cache(maxsize=1024)
def _hashes_for(zeros: int, confidence: float) -> float:
    """Hashes after which the best has `zeros` zeros with probability `confidence`."""
    return math.log1p(-confidence) / math.log1p(-(16.0**-zeros))


def _blocks_for(hashes: float, per_block: float) -> int:
    """Whole blocks of hashing that cover `hashes`, at least one."""
    return max(1, math.ceil(hashes / per_block))


class Capacity:
    """Which blocks of the pool are still free after the plans of the jobs ahead."""

    def __init__(self) -> None:
        self._taken: list[tuple[int, int]] = []  # sorted, disjoint, inclusive

    def free_between(self, lo: int, hi: int) -> int:
        free = max(0, hi - lo + 1)
        for a, b in self._taken:
            free -= max(0, min(b, hi) - max(a, lo) + 1)
        return free

    def nth_free_from(self, lo: int, n: int) -> int:
        """Height of the n-th free block at or after `lo` (n >= 1)."""
        at = lo
        for a, b in self._taken:
            if b < at:
                continue
            if a > at:
                if n <= a - at:
                    return at + n - 1
                n -= a - at
            at = b + 1
        return at + n - 1

    def nth_free_before(self, hi: int, n: int, floor: int) -> int | None:
        """Height of the n-th free block at or before `hi`, not below `floor` (None: fewer)."""
        at = hi
        for a, b in reversed(self._taken):
            if a > at:
                continue
            if b < at:
                if n <= at - b:
                    break
                n -= at - b
            at = a - 1
        found = at - n + 1
        return found if found >= floor else None

    def take(self, lo: int, hi: int) -> None:
        merged: list[tuple[int, int]] = []
        for a, b in sorted([*self._taken, (lo, hi)]):
            if merged and a <= merged[-1][1] + 1:
                merged[-1] = (merged[-1][0], max(merged[-1][1], b))
            else:
                merged.append((a, b))
        self._taken = merged


@dataclass(frozen=True, slots=True)
class PlanContext:
    """What the plans made at one height share: the pool's rate, the setting, the confidence."""

    height: int
    per_block: float  # hashes per block of the whole pool; 0 when unknown
    start: TargetStart
    confidence: float

    def plan(self, job: AgeJob, capacity: Capacity) -> Plan:
        """The job's plan on the blocks `capacity` leaves free; takes the blocks it uses."""
        if job.best_zeros >= age_difficulty(self.height - job.block_start, job.difficulty_range):
            return self._valid(job)
        threshold = self.start.threshold
        if threshold is not None:  # the old meaning: hash once the difficulty is <= N
            start = self._valid_from(job, threshold)
            if self.per_block == 0:  # no rate to plan with: only the start is known
                return self._make(job, PlanKind.THRESHOLD, start=start)
            valid_by = self._earliest(job, self.confidence, capacity, start)
            return self._hashing(job, PlanKind.THRESHOLD, start, valid_by, capacity)
        if self.per_block == 0:
            return self._make(job, PlanKind.RATE_UNKNOWN, start=self.height)
        valid_by = self._earliest(job, self.confidence, capacity, self.height)
        auto_start = self._auto_start(job, valid_by, capacity)
        if auto_start is None:  # the proof in hand gets there: nothing to hash
            return self._make(
                job, PlanKind.AUTO, zeros=job.best_zeros, valid_by=valid_by, median=valid_by
            )
        return self._hashing(job, PlanKind.AUTO, auto_start, valid_by, capacity)

    def _hashing(
        self, job: AgeJob, kind: PlanKind, start: int, valid_by: int, capacity: Capacity
    ) -> Plan:
        """A plan that hashes the free blocks from `start` on, taking them up to `valid_by`."""
        zeros = age_difficulty(valid_by - job.block_start, job.difficulty_range)
        median = self._earliest(job, 0.5, capacity, start)
        hashes = capacity.free_between(start, valid_by) * self.per_block
        capacity.take(start, valid_by)
        return self._make(
            job, kind, zeros=zeros, start=start, valid_by=valid_by, median=median, hashes=hashes
        )

    def _auto_start(self, job: AgeJob, valid_by: int, capacity: Capacity) -> int | None:
        """The latest start that makes the proof valid by `valid_by` with `confidence` (None:
        the proof in hand does), moved earlier if need be to keep the median block close to
        the best the rate allows.

        The median matters where the curve steps: when the rate makes a level likely but not
        95 % likely, the 95 % block is a level later, and a start planned for it alone would
        throw the likely earlier proof away (at range 1800 and 45 M hashes/s: 783, not 695).
        """
        start = self._latest_start(job, valid_by, capacity, self.confidence)
        median = valid_by if start is None else self._earliest(job, 0.5, capacity, start)
        best = self._earliest(job, 0.5, capacity, self.height)
        if median - job.block_start <= (best - job.block_start) * (1 + MEDIAN_SLACK):
            return start
        for_median = self._latest_start(job, best, capacity, 0.5)
        return for_median if start is None or for_median is None else min(start, for_median)

    def _make(
        self,
        job: AgeJob,
        kind: PlanKind,
        *,
        zeros: int | None = None,
        start: int | None = None,
        valid_by: int | None = None,
        median: int | None = None,
        hashes: float = 0.0,
    ) -> Plan:
        return Plan(
            job.job_id,
            kind,
            self.height,
            target_zeros=zeros,
            start_block=start,
            valid_by_block=valid_by,
            median_valid_block=median,
            planned_hashes=hashes,
            confidence=self.confidence,
        )

    def _earliest(self, job: AgeJob, confidence: float, capacity: Capacity, first: int) -> int:
        """First height at which P(valid) >= confidence, hashing every free block from `first`.

        A level of z zeros gets there at the later of two heights: where the curve accepts z
        zeros (falls as z grows) and where enough hashes are done for z (rises as z grows).
        The earliest is next to where they cross: the first level whose hashes come no
        earlier than its curve, or the level below it. Levels above the current difficulty
        never win; levels up to the best in hand need no hashing, only the curve.
        """
        lo = job.best_zeros + 1
        hi = age_difficulty(self.height - job.block_start, job.difficulty_range)
        while lo < hi:  # hashes >= curve holds at hi: the curve is there already
            mid = (lo + hi) // 2
            if self._hashed(job, mid, confidence, capacity, first) >= self._valid_from(job, mid):
                hi = mid
            else:
                lo = mid + 1
        crossed = self._hashed(job, lo, confidence, capacity, first)
        return crossed if lo == 1 else min(crossed, self._valid_from(job, lo - 1))

    def _hashed(
        self, job: AgeJob, zeros: int, confidence: float, capacity: Capacity, first: int
    ) -> int:
        """The height by which, hashing free blocks from `first`, `zeros` zeros are as likely
        as `confidence` (at least one block: hashes that found nothing make no proof alone)."""
        blocks = _blocks_for(_hashes_for(zeros, confidence) - job.hashes, self.per_block)
        return capacity.nth_free_from(first, blocks)

    def _latest_start(
        self, job: AgeJob, block: int, capacity: Capacity, confidence: float
    ) -> int | None:
        """The last start that makes the proof valid by `block` with `confidence`, so no hash
        comes earlier than needed (None: the proof in hand is valid there)."""
        zeros = age_difficulty(block - job.block_start, job.difficulty_range)
        if job.best_zeros >= zeros:
            return None
        blocks = _blocks_for(_hashes_for(zeros, confidence) - job.hashes, self.per_block)
        start = capacity.nth_free_before(block, blocks, self.height)
        assert start is not None  # `block` was reached from now with at least this many
        return start

    def _valid_from(self, job: AgeJob, zeros: int) -> int:
        """First height from now on at which a proof with `zeros` zeros is accepted."""
        if zeros >= MAX_DIFFICULTY:  # even before block_start: ages <= 1 ask for 64
            return self.height
        return max(self.height, job.block_start + _first_ages(job.difficulty_range)[zeros])

    def _valid(self, job: AgeJob) -> Plan:
        valid_from = job.block_start + _first_ages(job.difficulty_range)[job.best_zeros]
        return self._make(
            job, PlanKind.VALID, zeros=job.best_zeros, valid_by=valid_from, median=valid_from
        )
