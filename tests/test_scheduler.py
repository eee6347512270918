"""Chunk hand-out and result bookkeeping, without processes."""

from __future__ import annotations

import pytest

from pow.kernel import ChunkResult, HashlibKernel
from pow.scheduler import Chunk, Outcome, OutcomeKind, Priority, Progress, Scheduler, SearchTask

kernel = HashlibKernel()


def run_chunk(s: Scheduler, chunk: Chunk, now: float = 1.0) -> list[tuple[str, object]]:
    result = kernel.search(chunk.prefix, chunk.start, chunk.count, chunk.difficulty)
    return list(s.chunk_done(chunk, result, now))


def miss(chunk: Chunk) -> ChunkResult:
    return ChunkResult(None, chunk.count, chunk.start, 0, "f" * 64)


def test_higher_priority_first_then_round_robin() -> None:
    s = Scheduler()
    s.add("low", SearchTask("a", 64, Priority.LOW))
    s.add("n1", SearchTask("b", 64))
    s.add("n2", SearchTask("c", 64))
    s.add("crit", SearchTask("d", 64, Priority.CRITICAL))
    order = [s.next_chunk(10, 0.0) for _ in range(5)]
    assert [c.job_id for c in order if c] == ["crit", "crit", "crit", "crit", "crit"]
    s.cancel("crit")
    order = [s.next_chunk(10, 0.0) for _ in range(4)]
    assert [c.job_id for c in order if c] == ["n1", "n2", "n1", "n2"]
    s.cancel("n1")
    s.cancel("n2")
    assert s.next_chunk(10, 0.0).job_id == "low"  # type: ignore[union-attr]


def test_max_iterations_bounds_hashes_exactly() -> None:
    s = Scheduler()
    s.add("j", SearchTask("abc-", 64, start_nonce=5, max_iterations=25))
    chunks = [s.next_chunk(10, 0.0) for _ in range(4)]
    assert [(c.start, c.count) for c in chunks if c] == [(5, 10), (15, 10), (25, 5)]
    assert chunks[3] is None
    events = [e for c in chunks if c for e in s.chunk_done(c, miss(c), 1.0)]
    outcome = events[-1][1]
    assert isinstance(outcome, Outcome) and outcome.kind is OutcomeKind.EXHAUSTED
    assert outcome.progress.hashes == 25
    assert outcome.error == "no proof within 25 hashes (max_iterations reached)"
    assert "j" not in s


def test_checkpoint_waits_for_the_oldest_chunk() -> None:
    s = Scheduler()
    s.add("j", SearchTask("abc-", 64))
    a, b, c = (s.next_chunk(10, 0.0) for _ in range(3))
    assert a and b and c
    (_, p) = s.chunk_done(c, miss(c), 1.0)[0]
    assert isinstance(p, Progress) and p.checkpoint == 0 and p.hashes == 10
    s.chunk_done(a, miss(a), 1.0)
    (_, p) = s.chunk_done(b, miss(b), 1.0)[0]
    assert isinstance(p, Progress) and p.checkpoint == 30


def test_lost_chunk_is_handed_out_again_then_the_job_fails() -> None:
    s = Scheduler()
    s.add("j", SearchTask("abc-", 64))
    first = s.next_chunk(10, 0.0)
    assert first is not None
    assert s.chunk_lost(first) == []
    again = s.next_chunk(10, 0.0)
    assert again == first
    s.chunk_lost(again)
    events = s.chunk_lost(s.next_chunk(10, 0.0))  # type: ignore[arg-type]
    outcome = events[0][1]
    assert isinstance(outcome, Outcome) and outcome.kind is OutcomeKind.FAILED
    assert "died 3 times" in (outcome.error or "")


def test_found_proof_ends_the_job_and_late_chunks_are_ignored() -> None:
    s = Scheduler()
    s.add("j", SearchTask("abc-", 3))
    a, b = s.next_chunk(5000, 0.0), s.next_chunk(5000, 0.0)
    assert a and b
    (_, outcome) = run_chunk(s, a)[0]
    assert isinstance(outcome, Outcome) and outcome.kind is OutcomeKind.FOUND
    assert outcome.nonce == 285 and outcome.hash and outcome.hash.startswith("000")
    assert run_chunk(s, b) == []


def test_lowering_difficulty_finishes_with_a_best_hash_already_good_enough() -> None:
    s = Scheduler()
    s.add("j", SearchTask("abc-", 10))
    chunk = s.next_chunk(30_000, 0.0)
    assert chunk
    run_chunk(s, chunk)  # best so far has 4 zeros (nonce 25104)
    assert s.set_difficulty("j", 9) == []
    (_, outcome) = s.set_difficulty("j", 4)[0]
    assert isinstance(outcome, Outcome) and (outcome.nonce, outcome.zeros) == (25104, 4)


def test_paused_jobs_get_no_chunks() -> None:
    s = Scheduler()
    s.add("j", SearchTask("abc-", 64))
    s.pause("j", True)
    assert s.next_chunk(10, 0.0) is None
    s.pause("j", False)
    assert s.next_chunk(10, 0.0) is not None


def test_task_validation() -> None:
    with pytest.raises(ValueError):
        SearchTask("a", 0)
    with pytest.raises(ValueError):
        SearchTask("a", 3, max_iterations=0)
    s = Scheduler()
    s.add("j", SearchTask("a", 3))
    with pytest.raises(ValueError, match="already"):
        s.add("j", SearchTask("a", 3))
