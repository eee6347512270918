"""Which chunk of which job a free worker hashes next, and what the results mean.

Pure bookkeeping, no processes or threads: the pool drives it from one thread.
"""

from __future__ import annotations

import collections
from dataclasses import dataclass, field
from enum import IntEnum, StrEnum

from pow.kernel import ChunkResult
from pow.layout import LAYOUT_LATEST, check_layout, position_limit
from pow.scheme import validate_difficulty

HASHRATE_WINDOW_SECONDS = 3.0
MAX_CHUNK_LOSSES = 3  # a chunk whose worker dies this often fails its job instead of looping


class Priority(IntEnum):
    LOW = 0
    NORMAL = 1
    HIGH = 2
    CRITICAL = 3


@dataclass(frozen=True, slots=True)
class SearchTask:
    """One job's search: hash the positions of `layout` (pow.layout) from `start_nonce` on
    until `difficulty` is met. `start_nonce` is a position (a nonce only under LAYOUT_PLAIN);
    a job keeps the layout it was created with."""

    prefix: str
    difficulty: int
    priority: Priority = Priority.NORMAL
    start_nonce: int = 0
    max_iterations: int | None = None
    layout: int = LAYOUT_LATEST

    def __post_init__(self) -> None:
        validate_difficulty(self.difficulty)
        check_layout(self.layout)
        if self.start_nonce < 0:
            raise ValueError("start_nonce must be >= 0")
        if self.max_iterations is not None and self.max_iterations < 1:
            raise ValueError("max_iterations must be >= 1")


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
    """A job's search so far. `checkpoint`: every position below it has been hashed."""

    hashes: int
    hashrate: float
    best_zeros: int
    best_nonce: int | None
    best_hash: str | None
    checkpoint: int


class OutcomeKind(StrEnum):
    FOUND = "found"
    EXHAUSTED = "exhausted"
    CANCELLED = "cancelled"
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
    started: float | None = None
    paused: bool = False
    hashes: int = 0
    best_zeros: int = -1
    best_nonce: int | None = None
    best_hash: str | None = None
    last_served: int = -1
    in_flight: dict[int, int] = field(default_factory=dict)  # start -> count
    retry: list[tuple[int, int]] = field(default_factory=list)
    losses: int = 0
    samples: collections.deque[tuple[float, int]] = field(default_factory=collections.deque)

    def runnable(self) -> bool:
        if self.paused:
            return False
        return bool(self.retry) or self.end is None or self.next_nonce < self.end

    def checkpoint(self) -> int:
        starts = [*self.in_flight, *(s for s, _ in self.retry), self.next_nonce]
        return min(starts)

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

    def add(self, job_id: str, task: SearchTask) -> None:
        if job_id in self._jobs:
            raise ValueError(f"job {job_id} is already in the pool")
        self._seq += 1
        end = None if task.max_iterations is None else task.start_nonce + task.max_iterations
        limit = position_limit(task.layout, task.prefix.encode())
        if limit is not None:  # the layout's positions run out (2**53 of them)
            end = limit if end is None else min(end, limit)
        self._jobs[job_id] = _Job(
            job_id,
            task,
            task.prefix.encode(),
            self._seq,
            task.difficulty,
            task.start_nonce,
            end,
        )

    def next_chunk(self, size: int, now: float) -> Chunk | None:
        """The next chunk to hash (at most `size` nonces), or None if no job can use a worker."""
        candidates = [job for job in self._jobs.values() if job.runnable()]
        if not candidates:
            return None
        job = min(candidates, key=lambda j: (-j.task.priority, j.last_served, j.seq))
        self._tick += 1
        job.last_served = self._tick
        if job.started is None:
            job.started = now
            job.samples.append((now, 0))
        if job.retry:
            start, count = job.retry.pop(0)
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
        if (
            job.end is not None
            and not job.retry
            and not job.in_flight
            and job.next_nonce >= job.end
        ):
            limit = job.end - job.task.start_nonce
            if job.task.max_iterations is None or limit < job.task.max_iterations:
                error = f"no proof within {limit} hashes (every nonce of the search order)"
            else:
                error = f"no proof within {limit} hashes (max_iterations reached)"
            return [self._finish(job, OutcomeKind.EXHAUSTED, error)]
        return [(job.job_id, job.progress())]

    def chunk_lost(self, chunk: Chunk) -> list[Event]:
        """The worker hashing `chunk` died: hand the chunk out again, or give up on the job."""
        job = self._jobs.get(chunk.job_id)
        if job is None or job.in_flight.pop(chunk.start, None) is None:
            return []
        job.losses += 1
        if job.losses >= MAX_CHUNK_LOSSES:
            error = f"worker processes died {job.losses} times while hashing this job"
            return [self._finish(job, OutcomeKind.FAILED, error)]
        job.retry.append((chunk.start, chunk.count))
        return []

    def cancel(self, job_id: str) -> list[Event]:
        job = self._jobs.get(job_id)
        return [] if job is None else [self._finish(job, OutcomeKind.CANCELLED)]

    def cancel_all(self, error: str) -> list[Event]:
        """End every job (the pool is going away) so nobody waits forever."""
        return [self._finish(job, OutcomeKind.FAILED, error) for job in list(self._jobs.values())]

    def pause(self, job_id: str, paused: bool) -> None:
        if job := self._jobs.get(job_id):
            job.paused = paused

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
