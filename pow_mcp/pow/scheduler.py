"""Which chunk of which job a free worker hashes next, and what the results mean.

Pure bookkeeping, no processes or threads: the pool drives it from one thread.

A job's search walks positions 0, 1, 2, ... (a position is a nonce in today's layout).
Its `Checkpoint` says where it stands: every position below `position` was hashed except
the `pending` ranges. A task built from a checkpoint hashes the pending ranges first, then
goes on from `position`: no position is hashed twice, none is skipped, and `hashes` and the
best hash carry on from where they were.
"""

from __future__ import annotations

import collections
from dataclasses import dataclass, field
from enum import IntEnum, StrEnum

from pow_mcp.pow.kernels import ChunkResult
from pow_mcp.pow.layout import LAYOUT_LATEST, check_layout, position_limit
from pow_mcp.pow.scheme import validate_difficulty

HASHRATE_WINDOW_SECONDS = 3.0
MAX_CHUNK_LOSSES = 3  # a chunk whose worker dies this often fails its job instead of looping


class Priority(IntEnum):
    LOW = 0
    NORMAL = 1
    HIGH = 2
    CRITICAL = 3


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """Everything below `position` is hashed, except the `pending` (start, count) ranges."""

    position: int = 0
    pending: tuple[tuple[int, int], ...] = ()

    def __post_init__(self) -> None:
        if self.position < 0:
            raise ValueError("a checkpoint position must be >= 0")
        for start, count in self.pending:
            if start < 0 or count < 1 or start + count > self.position:
                raise ValueError(f"pending range ({start}, {count}) is not below {self.position}")

    @property
    def done(self) -> int:
        """How many positions are hashed."""
        return self.position - sum(count for _, count in self.pending)


@dataclass(frozen=True, slots=True)
class Best:
    """The best hash found so far: the earliest position with the most leading zeros."""

    zeros: int
    nonce: int
    hash: str


@dataclass(frozen=True, slots=True)
class SearchTask:
    """One job's search: hash prefix + nonce in its search order (`layout`, pow.layout)
    until `difficulty` is met. A job keeps the layout it was created with.

    `checkpoint`, `hashes` and `best` continue an earlier search of the same job;
    `max_iterations` bounds the positions searched in all (the search covers
    [0, max_iterations)).
    """

    prefix: str
    difficulty: int
    priority: Priority = Priority.NORMAL
    max_iterations: int | None = None
    checkpoint: Checkpoint = Checkpoint()
    hashes: int = 0
    best: Best | None = None
    layout: int = LAYOUT_LATEST

    def __post_init__(self) -> None:
        validate_difficulty(self.difficulty)
        check_layout(self.layout)
        if self.max_iterations is not None and self.max_iterations < 1:
            raise ValueError("max_iterations must be >= 1")
        if self.hashes < 0:
            raise ValueError("hashes must be >= 0")


@dataclass(frozen=True, slots=True)
class Chunk:
    """Positions start .. start+count-1 of the job's layout."""

    job_id: str
    prefix: bytes
    start: int
    count: int
    difficulty: int
    layout: int


@dataclass(frozen=True, slots=True)
class Progress:
    """A job's search so far; resuming from `checkpoint` hashes nothing twice.

    `note` says why the search is not moving when the pool knows (a cluster pool waiting
    for its cluster); None while it hashes.
    """

    hashes: int
    hashrate: float
    best_zeros: int
    best_nonce: int | None
    best_hash: str | None
    checkpoint: Checkpoint
    note: str | None = None


class OutcomeKind(StrEnum):
    FOUND = "found"
    EXHAUSTED = "exhausted"
    CANCELLED = "cancelled"  # dropped at once: chunks still out are not counted
    STOPPED = "stopped"  # stopped cleanly (pause): every chunk handed out came back
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class Outcome:
    kind: OutcomeKind
    progress: Progress
    nonce: int | None = None
    hash: str | None = None
    zeros: int = 0
    error: str | None = None


Event = tuple[str, Progress | Outcome]


@dataclass
class _Job:
    job_id: str
    task: SearchTask
    prefix: bytes
    seq: int
    difficulty: int
    next_nonce: int
    end: int | None
    hashes: int
    best_zeros: int = -1
    best_nonce: int | None = None
    best_hash: str | None = None
    started: float | None = None
    stopping: bool = False
    last_served: int = -1
    rank: int = 0  # among one priority, lower first (the policy's order of age-based jobs)
    in_flight: dict[int, int] = field(default_factory=dict)  # start -> count
    retry: list[tuple[int, int]] = field(default_factory=list)
    losses: int = 0
    samples: collections.deque[tuple[float, int]] = field(default_factory=collections.deque)

    def runnable(self) -> bool:
        if self.stopping:
            return False
        return bool(self.retry) or self.end is None or self.next_nonce < self.end

    def checkpoint(self) -> Checkpoint:
        pending = sorted([*self.in_flight.items(), *self.retry])
        return Checkpoint(self.next_nonce, tuple(pending))

    def hashrate(self) -> float:
        if len(self.samples) < 2:
            return 0.0
        (t0, h0), (t1, h1) = self.samples[0], self.samples[-1]
        return (h1 - h0) / (t1 - t0) if t1 > t0 else 0.0

    def progress(self) -> Progress:
        zeros = max(self.best_zeros, 0)
        return Progress(
            self.hashes,
            self.hashrate(),
            zeros,
            self.best_nonce,
            self.best_hash,
            self.checkpoint(),
        )


class Scheduler:
    """Hands out chunks by priority, round-robin among equals, and folds results into jobs."""

    def __init__(self) -> None:
        self._jobs: dict[str, _Job] = {}
        self._seq = 0
        self._tick = 0

    def __contains__(self, job_id: str) -> bool:
        return job_id in self._jobs

    def add(self, job_id: str, task: SearchTask) -> list[Event]:
        """Start a search; a best hash carried over that already meets the target ends it."""
        if job_id in self._jobs:
            raise ValueError(f"job {job_id} is already in the pool")
        self._seq += 1
        checkpoint = task.checkpoint
        end = task.max_iterations
        limit = position_limit(task.layout, task.prefix.encode())
        if limit is not None:  # the layout's positions run out (2**53 of them)
            end = limit if end is None else min(end, limit)
        job = self._jobs[job_id] = _Job(
            job_id,
            task,
            task.prefix.encode(),
            self._seq,
            task.difficulty,
            checkpoint.position,
            end,
            task.hashes,
            retry=list(checkpoint.pending),
        )
        if task.best is not None:
            job.best_zeros, job.best_nonce, job.best_hash = (
                task.best.zeros,
                task.best.nonce,
                task.best.hash,
            )
            if job.best_zeros >= job.difficulty:
                return [self._finish(job, OutcomeKind.FOUND)]
        return self._exhausted_or_none(job)

    def next_chunk(self, size: int, now: float) -> Chunk | None:
        """The next chunk to hash (at most `size` nonces), or None if no job can use a worker."""
        candidates = [job for job in self._jobs.values() if job.runnable()]
        if not candidates:
            return None
        job = min(candidates, key=lambda j: (-j.task.priority, j.rank, j.last_served, j.seq))
        self._tick += 1
        job.last_served = self._tick
        if job.started is None:
            job.started = now
            job.samples.append((now, job.hashes))  # a resumed job's earlier hashes are not new
        if job.retry:
            start, count = job.retry.pop(0)
            if count > size:  # a big pending range goes out in pieces of the usual size
                job.retry.insert(0, (start + size, count - size))
                count = size
        else:
            start = job.next_nonce
            count = size if job.end is None else min(size, job.end - start)
            job.next_nonce = start + count
        job.in_flight[start] = count
        return Chunk(job.job_id, job.prefix, start, count, job.difficulty, job.task.layout)

    def chunk_done(self, chunk: Chunk, result: ChunkResult, now: float) -> list[Event]:
        job = self._jobs.get(chunk.job_id)
        if job is None or job.in_flight.pop(chunk.start, None) is None:
            return []  # the job ended while this chunk was out: its work no longer counts
        job.hashes += result.hashes
        job.samples.append((now, job.hashes))
        while len(job.samples) > 2 and now - job.samples[1][0] >= HASHRATE_WINDOW_SECONDS:
            job.samples.popleft()
        if result.best_zeros > job.best_zeros:
            job.best_zeros = result.best_zeros
            job.best_nonce, job.best_hash = result.best_nonce, result.best_hash
        if job.best_zeros >= job.difficulty:
            return [self._finish(job, OutcomeKind.FOUND)]
        if job.stopping and not job.in_flight:
            return [self._finish(job, OutcomeKind.STOPPED)]
        return self._exhausted_or_none(job) or [(job.job_id, job.progress())]

    def _exhausted_or_none(self, job: _Job) -> list[Event]:
        if job.end is None or job.retry or job.in_flight or job.next_nonce < job.end:
            return []
        limit = job.task.max_iterations
        if limit is None or job.end < limit:
            error = f"no proof within {job.end} hashes (every nonce of the search order)"
        else:
            error = f"no proof within {job.end} hashes (max_iterations reached)"
        return [self._finish(job, OutcomeKind.EXHAUSTED, error)]

    def chunk_lost(self, chunk: Chunk) -> list[Event]:
        """The worker hashing `chunk` died: hand the chunk out again, or give up on the job."""
        job = self._jobs.get(chunk.job_id)
        if job is None or chunk.start not in job.in_flight:
            return []
        job.losses += 1
        # Pending again even when the job fails: its checkpoint must not skip the chunk.
        events = self.chunk_returned(chunk)
        if events or job.losses < MAX_CHUNK_LOSSES:
            return events
        error = f"worker processes died {job.losses} times while hashing this job"
        return [self._finish(job, OutcomeKind.FAILED, error)]

    def chunk_returned(self, chunk: Chunk) -> list[Event]:
        """`chunk` came back without a result through no fault of its own (a cluster pool
        lost the connection that would have brought it): it is pending again, and handed
        out again before new positions. Unlike `chunk_lost`, this counts no loss against the
        job, so an outage of any length never fails it here."""
        job = self._jobs.get(chunk.job_id)
        if job is None or job.in_flight.pop(chunk.start, None) is None:
            return []
        job.retry.append((chunk.start, chunk.count))
        if job.stopping and not job.in_flight:
            return [self._finish(job, OutcomeKind.STOPPED)]
        return []

    def progress(self, job_id: str) -> Progress | None:
        """Where the job's search stands now (None: not in the pool)."""
        job = self._jobs.get(job_id)
        return None if job is None else job.progress()

    def cancel(self, job_id: str) -> list[Event]:
        job = self._jobs.get(job_id)
        return [] if job is None else [self._finish(job, OutcomeKind.CANCELLED)]

    def stop(self, job_id: str) -> list[Event]:
        """Hand out no more chunks; end as STOPPED (or FOUND) once those out come back."""
        job = self._jobs.get(job_id)
        if job is None:
            return []
        job.stopping = True
        return [] if job.in_flight else [self._finish(job, OutcomeKind.STOPPED)]

    def cancel_all(self, error: str) -> list[Event]:
        """End every job (the pool is going away) so nobody waits forever."""
        return [self._finish(job, OutcomeKind.FAILED, error) for job in list(self._jobs.values())]

    def set_rank(self, job_id: str, rank: int) -> None:
        """Order among jobs of one priority: lower ranks are served first."""
        job = self._jobs.get(job_id)
        if job is not None:
            job.rank = rank

    def set_difficulty(self, job_id: str, difficulty: int) -> list[Event]:
        """Change the target; a best hash already good enough finishes the job now."""
        validate_difficulty(difficulty)
        job = self._jobs.get(job_id)
        if job is None:
            return []
        job.difficulty = difficulty
        if job.best_zeros >= difficulty:
            return [self._finish(job, OutcomeKind.FOUND)]
        return []

    def _finish(self, job: _Job, kind: OutcomeKind, error: str | None = None) -> Event:
        del self._jobs[job.job_id]
        progress = job.progress()
        if kind is OutcomeKind.FOUND:
            outcome = Outcome(kind, progress, job.best_nonce, job.best_hash, job.best_zeros)
        else:
            outcome = Outcome(kind, progress, error=error)
        return (job.job_id, outcome)
