"""The hashlib search kernel against the brute-force reference, under every layout."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pow_mcp.pow.kernels import ChunkResult, HashlibKernel, available_kernels, get_kernel
from pow_mcp.pow.layout import LAYOUT_LATEST, LAYOUT_PLAIN, segments
from pow_mcp.pow.scheme import verify
from tests.reference import ref_search

kernel = HashlibKernel()
LIMIT = 2**53


def as_tuple(r: ChunkResult) -> tuple[int | None, int, int, int, str]:
    return (r.found_nonce, r.hashes, r.best_nonce, r.best_zeros, r.best_hash)


def segment_starts(prefix: bytes) -> list[int]:
    """Positions where the latest layout moves to another digit count, and its end."""
    starts, position = [], 0
    for _, count in segments(LAYOUT_LATEST, prefix):
        position += count
        starts.append(position)
    return starts


@settings(max_examples=60, deadline=None)
@given(
    prefix=st.binary(max_size=120),
    start=st.one_of(
        st.integers(min_value=0, max_value=10**12),
        st.sampled_from([0, 9, 90, 995, 999_999_990, 9_999_999_995, 2**64 - 5]),
    ),
    count=st.integers(min_value=1, max_value=400),
    difficulty=st.integers(min_value=1, max_value=4),
)
def test_plain_layout_matches_reference(
    prefix: bytes, start: int, count: int, difficulty: int
) -> None:
    assert as_tuple(kernel.search(prefix, start, count, difficulty)) == ref_search(
        prefix, start, count, difficulty
    )


@settings(max_examples=150, deadline=None)
@given(
    length=st.integers(min_value=0, max_value=300),
    data=st.data(),
    count=st.integers(min_value=1, max_value=300),
    difficulty=st.integers(min_value=1, max_value=4),
)
def test_latest_layout_matches_reference(
    length: int, data: st.DataObject, count: int, difficulty: int
) -> None:
    # Positions anywhere, and across the moves from one digit count to the next.
    prefix = data.draw(st.binary(min_size=length, max_size=length))
    start = data.draw(
        st.one_of(
            st.integers(min_value=0, max_value=LIMIT - count),
            st.builds(
                lambda edge, off: min(max(0, edge + off), LIMIT - count),
                st.sampled_from(segment_starts(prefix)),
                st.integers(-350, 50),
            ),
        )
    )
    got = kernel.search(prefix, start, count, difficulty, LAYOUT_LATEST)
    assert as_tuple(got) == ref_search(prefix, start, count, difficulty, LAYOUT_LATEST)


def test_range_crossing_nine_to_ten_digits() -> None:
    start = 999_999_000
    assert as_tuple(kernel.search(b"5-42BUILD1000NONCE", start, 2000, 3)) == ref_search(
        b"5-42BUILD1000NONCE", start, 2000, 3
    )


@pytest.mark.parametrize("layout", [LAYOUT_PLAIN, LAYOUT_LATEST])
@pytest.mark.parametrize("difficulty", [1, 2, 3, 4, 5])
def test_proofs_verify(layout: int, difficulty: int) -> None:
    r = kernel.search(b"abc-", 0, 16 ** (difficulty + 2), difficulty, layout)
    assert r.found_nonce is not None and r.found_nonce <= 2**53 - 1
    check = verify("abc-", r.found_nonce, difficulty, claimed_hash=r.best_hash)
    assert check.valid and check.hash_matches


def test_best_is_the_earliest_with_most_zeros() -> None:
    r = kernel.search(b"abc-", 0, 5000, 64)
    ref = ref_search(b"abc-", 0, 5000, 64)
    assert r.found_nonce is None and r.hashes == 5000
    assert (r.best_nonce, r.best_zeros) == (ref[2], ref[3])


def test_chunks_add_up_to_one_search() -> None:
    # A job cut into chunks at any positions sees the same first proof and counts.
    prefix = b"5-42BUILD1000NONCE"
    whole = kernel.search(prefix, 0, 40_000, 3, LAYOUT_LATEST)
    assert whole.found_nonce is not None
    hashes, position = 0, 0
    for size in (1, 999, 7, 5000, 1, 13_000, 40_000):
        r = kernel.search(prefix, position, size, 3, LAYOUT_LATEST)
        hashes += r.hashes
        position += size
        if r.found_nonce is not None:
            break
    assert (r.found_nonce, hashes) == (whole.found_nonce, whole.hashes)


def test_bad_arguments() -> None:
    for args in ((b"x", -1, 1, 1), (b"x", 0, 0, 1), (b"x", 0, 1, 0), (b"x", 0, 1, 65)):
        with pytest.raises(ValueError):
            kernel.search(*args)
    with pytest.raises(ValueError, match="unknown search layout"):
        kernel.search(b"x", 0, 1, 1, 7)


def test_positions_past_2_53_are_refused() -> None:
    last = kernel.search(b"x", LIMIT - 3, 3, 64, LAYOUT_LATEST)
    assert last.hashes == 3
    with pytest.raises(ValueError, match=r"2\*\*53 - 1"):
        kernel.search(b"x", LIMIT - 3, 4, 64, LAYOUT_LATEST)
    with pytest.raises(ValueError, match=r"2\*\*53 - 1"):
        kernel.search(b"x", LIMIT, 1, 64, LAYOUT_LATEST)


def test_hashlib_is_always_available_and_can_be_forced(monkeypatch: pytest.MonkeyPatch) -> None:
    assert "hashlib" in available_kernels()
    monkeypatch.setenv("POW_KERNEL", "hashlib")
    assert get_kernel().name == "hashlib"
    with pytest.raises(ValueError, match="available"):
        get_kernel("no-such-kernel")
