"""What every search kernel is: the `SearchKernel` protocol and its `ChunkResult`."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Protocol

from pow_mcp.pow.layout import LAYOUT_PLAIN, check_layout, position_limit
from pow_mcp.pow.scheme import MAX_DIFFICULTY


@dataclass(frozen=True, slots=True)
class ChunkResult:
    """What one search over positions [start, start + count) found.

    `hashes` is how many positions were hashed: count, or up to and including the proof.
    `found_nonce` and `best_nonce` are nonces (what gets submitted), not positions; `best_*`
    is the earliest position with the most leading zeros among those hashed.
    """

    found_nonce: int | None
    hashes: int
    best_nonce: int
    best_zeros: int
    best_hash: str


class SearchKernel(Protocol):
    name: str

    def search(
        self, prefix: bytes, start: int, count: int, difficulty: int, layout: int = LAYOUT_PLAIN
    ) -> ChunkResult:
        """Hash positions start .. start+count-1 of `layout` in order (position p is nonce
        `pow.layout.nonce_at(layout, prefix, p)`); stop at the first proof of `difficulty`
        leading hex zeros."""
        ...


def check_search_args(prefix: bytes, start: int, count: int, difficulty: int, layout: int) -> None:
    check_layout(layout)
    if start < 0:
        raise ValueError("start must be >= 0")
    if count < 1:
        raise ValueError("count must be >= 1")
    if not 1 <= difficulty <= MAX_DIFFICULTY:
        raise ValueError(f"difficulty must be 1..{MAX_DIFFICULTY}")
    limit = position_limit(layout, prefix)
    if limit is not None and start + count > limit:
        raise ValueError(
            f"positions {start}..{start + count - 1} run past the end of layout {layout} "
            f"({limit} positions: nonces stay at most 2**53 - 1)"
        )


def search_runs(
    runs: Iterable[tuple[int, int]], difficulty: int, search: Callable[[int, int], ChunkResult]
) -> ChunkResult:
    """One result over runs of consecutive nonces, searched in order by search(first, count):
    stops at the first proof, and keeps the first best (the earliest position)."""
    hashes = 0
    best: ChunkResult | None = None
    for first, count in runs:
        r = search(first, count)
        hashes += r.hashes
        if best is None or r.best_zeros > best.best_zeros:
            best = r
        if r.found_nonce is not None:
            break
    assert best is not None, "a search covers at least one position"
    found = best.best_nonce if best.best_zeros >= difficulty else None
    return ChunkResult(found, hashes, best.best_nonce, best.best_zeros, best.best_hash)
