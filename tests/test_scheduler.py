"""Chunk hand-out and result bookkeeping, without processes."""

from __future__ import annotations

import pytest

from pow_mcp.pow.kernels import ChunkResult, HashlibKernel
from pow_mcp.pow.layout import LAYOUT_PLAIN
from pow_mcp.pow.scheduler import (
    Best,
    Checkpoint,
    Chunk,
    Outcome,
    OutcomeKind,
    Priority,
    Progress,
    Scheduler,
    SearchTask,
)

kernel = HashlibKernel()


def run_chunk(s: Scheduler, chunk: Chunk, now: float = 1.0) -> list[tuple[str, object]]:
    result = kernel.search(chunk.prefix, chunk.start, chunk.count, chunk.difficulty, chunk.layout)
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


def test_a_rank_orders_jobs_of_one_priority_below_it() -> None:
    s = Scheduler()
    s.add("second", SearchTask("a", 64))
    s.add("first", SearchTask("b", 64))
    s.add("urgent", SearchTask("c", 64, Priority.HIGH))
    s.set_rank("second", 1)
    s.set_rank("urgent", 5)  # a rank never outweighs a priority
    assert [s.next_chunk(10, 0.0).job_id for _ in range(2)] == ["urgent", "urgent"]  # type: ignore[union-attr]
    s.cancel("urgent")
    assert [s.next_chunk(10, 0.0).job_id for _ in range(3)] == ["first"] * 3  # type: ignore[union-attr]
    s.set_rank("second", 0)  # equal ranks share the workers again
    served = {s.next_chunk(10, 0.0).job_id for _ in range(2)}  # type: ignore[union-attr]
    assert served == {"first", "second"}
    s.set_rank("gone", 3)  # an id the scheduler does not have: nothing happens


def test_max_iterations_bounds_hashes_exactly() -> None:
    s = Scheduler()
    s.add("j", SearchTask("abc-", 64, max_iterations=25, checkpoint=Checkpoint(5), hashes=5))
    chunks = [s.next_chunk(10, 0.0) for _ in range(3)]
    assert [(c.start, c.count) for c in chunks if c] == [(5, 10), (15, 10)]
    assert chunks[2] is None
    events = [e for c in chunks if c for e in s.chunk_done(c, miss(c), 1.0)]
    outcome = events[-1][1]
    assert isinstance(outcome, Outcome) and outcome.kind is OutcomeKind.EXHAUSTED
    assert outcome.progress.hashes == 25
    assert outcome.error == "no proof within 25 hashes (max_iterations reached)"
    assert "j" not in s


def test_the_checkpoint_lists_the_chunks_still_out() -> None:
    s = Scheduler()
    s.add("j", SearchTask("abc-", 64))
    a, b, c = (s.next_chunk(10, 0.0) for _ in range(3))
    assert a and b and c
    (_, p) = s.chunk_done(c, miss(c), 1.0)[0]
    assert isinstance(p, Progress) and p.hashes == 10
    assert p.checkpoint == Checkpoint(30, ((0, 10), (10, 10)))
    s.chunk_done(a, miss(a), 1.0)
    (_, p) = s.chunk_done(b, miss(b), 1.0)[0]
    assert isinstance(p, Progress) and p.checkpoint == Checkpoint(30)


def test_a_resumed_search_hashes_the_pending_ranges_then_goes_on() -> None:
    s = Scheduler()
    checkpoint = Checkpoint(50, ((10, 25), (40, 5)))
    s.add("j", SearchTask("abc-", 64, checkpoint=checkpoint, hashes=20, max_iterations=70))
    chunks = []
    while (chunk := s.next_chunk(10, 0.0)) is not None:
        chunks.append((chunk.start, chunk.count))
        s.chunk_done(chunk, miss(chunk), 1.0)
    assert chunks == [(10, 10), (20, 10), (30, 5), (40, 5), (50, 10), (60, 10)]
    assert "j" not in s  # exhausted: 20 before + 50 now = all 70 positions once


def test_a_resumed_job_s_rate_counts_only_its_new_hashes() -> None:
    """After a pause, the hashes done before it are not new work: 1,000 hashes in 2 s after
    resuming a job that had 10 million is a rate of 500/s (it once read 5 million/s)."""
    s = Scheduler()
    s.add("j", SearchTask("abc-", 64, hashes=10_000_000))
    chunk = s.next_chunk(1_000, 10.0)
    assert chunk is not None
    s.chunk_done(chunk, miss(chunk), 12.0)
    progress = s.progress("j")
    assert progress is not None
    assert progress.hashes == 10_001_000
    assert progress.hashrate == pytest.approx(500.0)


def test_stop_waits_for_the_chunks_out_and_keeps_the_best() -> None:
    s = Scheduler()
    best = Best(2, 7, "00ab" + "f" * 60)
    s.add("j", SearchTask("abc-", 64, best=best, hashes=100, checkpoint=Checkpoint(100)))
    a, b = s.next_chunk(10, 0.0), s.next_chunk(10, 0.0)
    assert a and b
    assert s.stop("j") == []  # two chunks are still out
    assert s.next_chunk(10, 0.0) is None
    assert [type(e) for _, e in s.chunk_done(a, miss(a), 1.0)] == [Progress]
    (_, outcome) = s.chunk_done(b, miss(b), 1.0)[0]
    assert isinstance(outcome, Outcome) and outcome.kind is OutcomeKind.STOPPED
    p = outcome.progress
    assert (p.hashes, p.checkpoint, p.best_nonce, p.best_zeros) == (120, Checkpoint(120), 7, 2)


def test_a_carried_best_that_meets_the_target_finishes_at_once() -> None:
    s = Scheduler()
    events = s.add("j", SearchTask("abc-", 2, best=Best(3, 99, "000" + "f" * 61)))
    (_, outcome) = events[0]
    assert isinstance(outcome, Outcome) and (outcome.kind, outcome.nonce) == (
        OutcomeKind.FOUND,
        99,
    )


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
    # A retry from the failed job's checkpoint still hashes the chunk that was lost.
    assert outcome.progress.checkpoint == Checkpoint(10, ((0, 10),))


def test_a_returned_chunk_is_pending_again_and_never_fails_the_job() -> None:
    s = Scheduler()
    s.add("j", SearchTask("abc-", 64, max_iterations=30))
    first = s.next_chunk(10, 0.0)
    assert first is not None
    for _ in range(5):  # more returns than a job survives losses: it goes on
        assert s.chunk_returned(first) == []
        progress = s.progress("j")
        assert progress is not None and progress.checkpoint == Checkpoint(10, ((0, 10),))
        assert s.next_chunk(10, 0.0) == first  # pending ranges go out before new ones
    second = s.next_chunk(10, 0.0)
    assert second is not None and second.start == 10
    assert s.stop("j") == []  # two chunks out
    assert not any(isinstance(e, Outcome) for _, e in run_chunk(s, second))  # one still out
    ((_, outcome),) = s.chunk_returned(first)  # the last one out: stopped, first pending
    assert isinstance(outcome, Outcome) and outcome.kind is OutcomeKind.STOPPED
    assert outcome.progress.checkpoint == Checkpoint(20, ((0, 10),))
    assert outcome.progress.hashes == 10 and outcome.progress.note is None
    assert s.progress("j") is None


def test_found_proof_ends_the_job_and_late_chunks_are_ignored() -> None:
    s = Scheduler()
    s.add("j", SearchTask("abc-", 3, layout=LAYOUT_PLAIN))
    a, b = s.next_chunk(5000, 0.0), s.next_chunk(5000, 0.0)
    assert a and b
    (_, outcome) = run_chunk(s, a)[0]
    assert isinstance(outcome, Outcome) and outcome.kind is OutcomeKind.FOUND
    assert outcome.nonce == 285 and outcome.hash and outcome.hash.startswith("000")
    assert run_chunk(s, b) == []


def test_lowering_difficulty_finishes_with_a_best_hash_already_good_enough() -> None:
    s = Scheduler()
    s.add("j", SearchTask("abc-", 10, layout=LAYOUT_PLAIN))
    chunk = s.next_chunk(30_000, 0.0)
    assert chunk
    run_chunk(s, chunk)  # best so far has 4 zeros (nonce 25104)
    assert s.set_difficulty("j", 9) == []
    (_, outcome) = s.set_difficulty("j", 4)[0]
    assert isinstance(outcome, Outcome) and (outcome.nonce, outcome.zeros) == (25104, 4)


def test_task_validation() -> None:
    with pytest.raises(ValueError):
        SearchTask("a", 0)
    with pytest.raises(ValueError):
        SearchTask("a", 3, max_iterations=0)
    s = Scheduler()
    s.add("j", SearchTask("a", 3))
    with pytest.raises(ValueError, match="already"):
        s.add("j", SearchTask("a", 3))


def test_a_search_ends_where_its_order_does() -> None:
    s = Scheduler()
    end = 2**53  # the latest layout's positions: every nonce up to 2**53 - 1
    s.add("j", SearchTask("abc-", 64, checkpoint=Checkpoint(end - 10), hashes=end - 10))
    chunk = s.next_chunk(1000, 0.0)
    assert chunk is not None and (chunk.start, chunk.count) == (end - 10, 10)
    (_, outcome) = s.chunk_done(chunk, miss(chunk), 1.0)[0]
    assert isinstance(outcome, Outcome) and outcome.kind is OutcomeKind.EXHAUSTED
    assert outcome.error == f"no proof within {end} hashes (every nonce of the search order)"
