"""Blocks from an action's block_start to a valid proof, by when age-based jobs start hashing.

Usage: python benchmarks/time_to_proof.py [--jobs N] [--sets N] [--seconds S] [--seed N]

The hash rate is this machine's, measured with the real worker pool (pow_mcp.pow.bench.pool_rate);
the chain is simulated (BLOCK_TIME seconds a block) and so is the hashing: a hash has at
least z leading hex zeros with chance 16**-z, so each block draws, from the exact
distributions, whether and after how many hashes one meets the current difficulty, and
otherwise the best of the block's hashes. Jobs are driven the way the manager drives them:
the pool hashes, strictly in order, the jobs that the policy under test says should hash.

"Blocks to proof" is the height at which the job holds a proof the chain accepts, minus
block_start: the proof's valid_from_block when it was found before it became valid, and the
block it was found at when found later (a threshold policy finds its proof long after it
became valid, and the player can submit it only then).
"""

from __future__ import annotations

import argparse
import math
import random
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from pow_mcp.pow.bench import cpu_model, pool_rate
from pow_mcp.pow.difficulty import age_difficulty, first_valid_age
from pow_mcp.pow.plan import AUTO, AgeJob, TargetStart
from pow_mcp.pow.policy import hashing_order, plan_job, plan_jobs
from pow_mcp.pow.pool import default_workers

BLOCK_TIME = 5.0
PEER_RATE = 1e6  # hashes/s of the TypeScript peer (Node), as measured for issue 13
THRESHOLD = TargetStart(5)  # the peer's policy and our old default
GOALS = {220: 0.85, 1800: 0.65}  # range: most auto may take of threshold 5's median blocks
MULTI_RANGE, MULTI_JOBS, MULTI_SPREAD = 1800, 4, 100


@dataclass
class SimJob:
    """A simulated age-based job and what happened to it."""

    seq: int
    block_start: int
    created: int  # height at which it was submitted
    difficulty_range: float
    best: int = 0
    hashes: float = 0.0
    committed: bool = False  # fed back from its last plan, as the manager does
    done_at: int | None = None

    def view(self) -> AgeJob:
        return AgeJob(
            f"job{self.seq}",
            self.block_start,
            self.difficulty_range,
            best_zeros=self.best,
            hashes=int(self.hashes),
            created=self.seq,
            committed=self.committed,
        )

    def difficulty(self, height: int) -> int:
        return age_difficulty(height - self.block_start, self.difficulty_range)

    @property
    def blocks(self) -> int:
        assert self.done_at is not None
        return self.done_at - self.block_start


def best_below(limit: int, hashes: float, rng: random.Random) -> int:
    """Most leading zeros among `hashes` hashes, given that none has `limit` or more."""

    def at_least(z: int) -> float:  # P(the best of the hashes has >= z zeros)
        return -math.expm1(hashes * math.log1p(-(16.0**-z)))

    # 12 zeros past log16(hashes) happen once in 16**12 blocks: the scan can start there.
    top = min(limit - 1, int(math.log(max(hashes, 1.0), 16)) + 12)
    ceiling, u = at_least(limit), rng.random()
    for z in range(top, 0, -1):
        if (at_least(z) - ceiling) / (1 - ceiling) > u:
            return z
    return 0


def hash_block(job: SimJob, height: int, budget: float, rng: random.Random) -> float:
    """Spend up to `budget` hashes on `job` in block `height`; returns the hashes used."""
    difficulty = job.difficulty(height)
    if job.best >= difficulty:
        job.done_at = height
        return 0.0
    p = 16.0**-difficulty
    until = max(1, math.ceil(math.log(1.0 - rng.random()) / math.log1p(-p)))  # geometric
    if until <= budget:
        extra = int(math.log(1.0 - rng.random()) / math.log(1 / 16))  # zeros beyond the target
        job.best = max(job.best, min(64, difficulty + extra))
        job.hashes += until
        job.done_at = height
        return until
    job.best = max(job.best, best_below(difficulty, budget, rng))
    job.hashes += budget
    return budget


# Which live jobs the pool hashes at a height, first served first.
Chooser = Callable[[int, list[SimJob]], list[SimJob]]


def run_chain(jobs: list[SimJob], per_block: float, choose: Chooser, rng: random.Random) -> None:
    height = min(job.created for job in jobs)
    while any(job.done_at is None for job in jobs):
        live = [j for j in jobs if j.done_at is None and j.created <= height]
        for job in live:  # a proof in hand becomes valid as the difficulty falls
            if job.best >= job.difficulty(height):
                job.done_at = height
        live = [j for j in live if j.done_at is None]
        budget = per_block
        for job in choose(height, live):
            if budget > 0:
                budget -= hash_block(job, height, budget, rng)
        height += 1


def by_policy(hashrate: float, start: TargetStart) -> Chooser:
    """The pool as the manager runs it: plan_jobs once a block, hash in its order."""

    def choose(height: int, live: list[SimJob]) -> list[SimJob]:
        if not live:
            return []
        by_id = {f"job{j.seq}": j for j in live}
        plans = plan_jobs(
            [j.view() for j in live],
            height=height,
            hashrate=hashrate,
            block_time=BLOCK_TIME,
            start=start,
        )
        for plan in plans:
            by_id[plan.job_id].committed = plan.committed
        return [by_id[job_id] for job_id in hashing_order(plans, height)]

    return choose


def first_come(live: list[SimJob]) -> list[SimJob]:
    return sorted(live, key=lambda j: j.seq)


def threshold_first_come(height: int, live: list[SimJob]) -> list[SimJob]:
    limit = THRESHOLD.threshold or 0
    return [j for j in first_come(live) if j.difficulty(height) <= limit]


def fcfs_own_plans(hashrate: float) -> Chooser:
    """Arrival order; each job follows its own auto plan as if it had the pool alone."""

    def choose(height: int, live: list[SimJob]) -> list[SimJob]:
        chosen = []
        for job in first_come(live):
            plan = plan_job(job.view(), height=height, hashrate=hashrate, block_time=BLOCK_TIME)
            job.committed = plan.committed
            if plan.should_hash(height):
                chosen.append(job)
        return chosen

    return choose


@dataclass
class Figures:
    blocks: list[int]
    hashes: list[float]

    @property
    def median(self) -> float:
        return statistics.median(self.blocks)

    @property
    def p90(self) -> float:
        return quantile(self.blocks, 0.9)

    @property
    def median_hashes(self) -> float:
        return statistics.median(self.hashes)


def quantile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1)]


def single_jobs(
    difficulty_range: int, per_block: float, choose: Chooser, count: int, rng: random.Random
) -> Figures:
    """`count` jobs, each alone on the pool, submitted at their block_start."""
    blocks, hashes = [], []
    for _ in range(count):
        job = SimJob(0, 1000, 1000, difficulty_range)
        run_chain([job], per_block, choose, rng)
        blocks.append(job.blocks)
        hashes.append(job.hashes)
    return Figures(blocks, hashes)


SUBMITTED = 10_000  # the height at which every job of a set is submitted


def set_layout(seed: int, index: int) -> list[int]:
    """block_starts of set `index`, the same for every policy; listed in arrival order,
    which is therefore random with respect to age."""
    layout = random.Random(seed * 7919 + index)
    return [SUBMITTED - layout.randint(0, MULTI_SPREAD) for _ in range(MULTI_JOBS)]


def concurrent_sets(choose: Chooser, per_block: float, sets: int, seed: int) -> Figures:
    """Sets of 4 jobs with block_starts spread over 100 blocks, all submitted together."""
    sums, hashes = [], []
    for index in range(sets):
        starts = set_layout(seed, index)
        jobs = [SimJob(seq, bs, SUBMITTED, MULTI_RANGE) for seq, bs in enumerate(starts)]
        run_chain(jobs, per_block, choose, random.Random(seed * 104729 + index))
        sums.append(sum(job.blocks for job in jobs))
        hashes.append(sum(job.hashes for job in jobs))
    return Figures(sums, hashes)


def alone_bound(per_block: float, sets: int, seed: int) -> Figures:
    """Each job of each set with the whole pool from its submission: no schedule beats it."""
    sums, hashes = [], []
    for index in range(sets):
        rng = random.Random(seed * 104729 + index)
        total_blocks, total_hashes = 0, 0.0
        for bs in set_layout(seed, index):
            job = SimJob(0, bs, SUBMITTED, MULTI_RANGE)
            run_chain([job], per_block, lambda h, live: live, rng)
            total_blocks += job.blocks
            total_hashes += job.hashes
        sums.append(total_blocks)
        hashes.append(total_hashes)
    return Figures(sums, hashes)


def row(label: str, f: Figures) -> str:
    return f"  {label:<44}{f.median:>8.0f}{f.p90:>8.0f}{f.median_hashes:>12.3g}"


def report_single(
    difficulty_range: int,
    hashrate: float,
    count: int,
    rng: random.Random,
    out: Callable[[str], None],
) -> None:
    ours = hashrate * BLOCK_TIME
    peer = PEER_RATE * BLOCK_TIME
    runs = {
        "peer: threshold 5 at 1 M hashes/s": (peer, by_policy(PEER_RATE, THRESHOLD)),
        "old default: threshold 5 at our rate": (ours, by_policy(hashrate, THRESHOLD)),
        "hash from block 0 at our rate": (ours, lambda h, live: live),
        "auto at our rate": (ours, by_policy(hashrate, AUTO)),
    }
    figures = {
        label: single_jobs(difficulty_range, per_block, choose, count, rng)
        for label, (per_block, choose) in runs.items()
    }
    valid5 = first_valid_age(THRESHOLD.threshold or 0, difficulty_range)
    out(f"\nrange {difficulty_range} ({count} jobs each; difficulty 5 from age {valid5})")
    out(f"  {'':<44}{'median':>8}{'p90':>8}{'hashes':>12}")
    for label, f in figures.items():
        out(row(label, f))
    auto = figures["auto at our rate"]
    old = figures["old default: threshold 5 at our rate"]
    zero = figures["hash from block 0 at our rate"]
    goal = GOALS[difficulty_range]
    out(f"  auto / threshold 5, median blocks: {auto.median / old.median:.2f} (goal <= {goal})")
    out(
        f"  auto / block 0: median blocks {auto.median / zero.median:.2f} (goal <= 1.10), "
        f"median hashes {auto.median_hashes / zero.median_hashes:.3g} (goal < 1)"
    )


def report_concurrent(hashrate: float, sets: int, seed: int, out: Callable[[str], None]) -> None:
    per_block = hashrate * BLOCK_TIME
    runs: dict[str, Chooser] = {
        "first-come-first-served, hash on arrival": lambda h, live: first_come(live),
        "first-come-first-served, own auto plans": fcfs_own_plans(hashrate),
        "old default: threshold 5, arrival order": threshold_first_come,
        "auto: plan_jobs, soonest valid first": by_policy(hashrate, AUTO),
    }
    figures = {label: concurrent_sets(c, per_block, sets, seed) for label, c in runs.items()}
    figures["bound: each job with the pool to itself"] = alone_bound(per_block, sets, seed)
    out(
        f"\n{MULTI_JOBS} concurrent jobs, range {MULTI_RANGE}, block_starts spread over "
        f"{MULTI_SPREAD} blocks, submitted together in random order ({sets} sets)"
    )
    out(f"  {'sum of blocks to proof':<44}{'median':>8}{'p90':>8}{'hashes':>12}")
    for label, f in figures.items():
        out(row(label, f))
    auto = figures["auto: plan_jobs, soonest valid first"]
    mean_auto = statistics.mean(auto.blocks)
    for label in list(runs)[:3]:
        base = figures[label]
        goal = " (goal <= 0.90)" if label.endswith("hash on arrival") else ""
        out(
            f"  auto / {label}: median {auto.median / base.median:.2f}, mean "
            f"{mean_auto / statistics.mean(base.blocks):.2f}{goal}, hashes "
            f"{auto.median_hashes / base.median_hashes:.3g}"
        )
    bound = figures["bound: each job with the pool to itself"]
    fcfs = figures["first-come-first-served, hash on arrival"]
    out(
        f"  the bound / first-come-first-served (hash on arrival): mean "
        f"{statistics.mean(bound.blocks) / statistics.mean(fcfs.blocks):.2f} "
        "(no schedule can do better than this)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=400, help="simulated jobs per policy")
    parser.add_argument("--sets", type=int, default=100, help="sets of 4 concurrent jobs")
    parser.add_argument("--seconds", type=float, default=2.0, help="rate measurement")
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--rate", type=float, help="skip the measurement: hashes/s to assume")
    args = parser.parse_args()
    workers = default_workers()
    hashrate = args.rate or max(pool_rate(workers, args.seconds) for _ in range(2))
    source = "given" if args.rate else f"measured, pool of {workers} workers, best of 2"
    began = time.perf_counter()
    print(f"CPU: {cpu_model()}; {hashrate / 1e6:.1f} M hashes/s ({source})")
    print(f"simulated chain: {BLOCK_TIME:g} s blocks; blocks to proof and hashes per proof")
    rng = random.Random(args.seed)
    for difficulty_range in GOALS:
        report_single(difficulty_range, hashrate, args.jobs, rng, print)
    report_concurrent(hashrate, args.sets, args.seed, print)
    print(f"\n(simulation took {time.perf_counter() - began:.0f} s)")


if __name__ == "__main__":
    main()
