"""Search layouts: positions to nonces, the same forever for a given version and prefix."""

from __future__ import annotations

import hashlib
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pow_mcp.pow.layout import (
    LAYOUT_LATEST,
    LAYOUT_PLAIN,
    LAYOUT_SHORT_BLOCK,
    MAX_SAFE_NONCE,
    nonce_at,
    nonce_runs,
    position_limit,
    segments,
)

LIMIT = 2**53


def boundaries(prefix: bytes) -> list[int]:
    """The first position of every segment of the latest layout, and the limit."""
    starts, position = [], 0
    for _, count in segments(LAYOUT_LATEST, prefix):
        starts.append(position)
        position += count
    return [*starts, position]


def test_versions() -> None:
    assert (LAYOUT_PLAIN, LAYOUT_SHORT_BLOCK, LAYOUT_LATEST) == (1, 2, 2)
    with pytest.raises(ValueError, match="unknown search layout"):
        nonce_at(3, b"x", 0)


def test_plain_is_the_identity_and_unbounded() -> None:
    assert position_limit(LAYOUT_PLAIN, b"abc") is None
    for position in (0, 1, 9, 10, 2**53, 2**64 + 5, 10**30):
        assert nonce_at(LAYOUT_PLAIN, b"abc", position) == position
    assert list(nonce_runs(LAYOUT_PLAIN, b"abc", 2**64 - 3, 10)) == [(2**64 - 3, 10)]
    with pytest.raises(ValueError):
        nonce_at(LAYOUT_PLAIN, b"abc", -1)


@pytest.mark.parametrize("length", range(0, 301))
def test_latest_hashes_every_nonce_up_to_2_53_once(length: int) -> None:
    prefix = b"p" * length
    assert position_limit(LAYOUT_LATEST, prefix) == LIMIT
    runs = segments(LAYOUT_LATEST, prefix)
    assert sum(count for _, count in runs) == LIMIT
    # Sorted by first nonce, the runs tile 0 .. 2**53 - 1 without gap or overlap.
    next_nonce = 0
    for first, count in sorted(runs):
        assert first == next_nonce and count > 0
        next_nonce = first + count
    assert next_nonce == MAX_SAFE_NONCE + 1
    # Each run holds nonces of one digit count.
    for first, count in runs:
        assert len(str(first)) == len(str(first + count - 1))


@pytest.mark.parametrize("length", range(0, 129))
def test_latest_puts_the_cheapest_digit_counts_first(length: int) -> None:
    tail = length % 64
    digits = [len(str(first)) for first, _ in segments(LAYOUT_LATEST, b"q" * length)]
    one_block = [d for d in range(1, 17) if tail + d + 9 <= 64]
    second_block = [d for d in range(1, 17) if tail + d > 64]
    padding_only = [d for d in range(1, 17) if d not in one_block and d not in second_block]
    # One compression first (longest first: its last digits sit latest), then digits across
    # into a second block (most digits there first), then a second block of padding only.
    assert digits == sorted(one_block, reverse=True) + sorted(second_block, reverse=True) + sorted(
        padding_only, reverse=True
    )


def test_the_narrow_band_of_prefix_lengths() -> None:
    # 45..48 bytes (mod 64): 10**10 .. 10**7 nonces of one compression, then two per hash.
    for tail, one_block_nonces in ((45, 10**10), (46, 10**9), (47, 10**8), (48, 10**7)):
        runs = segments(LAYOUT_LATEST, b"n" * tail)
        assert sum(c for f, c in runs if tail + len(str(f)) <= 55) == one_block_nonces
        assert all(tail + len(str(f)) + 9 > 64 for f, _ in runs[55 - tail :])
    # 49: 10**6 nonces of one compression, then 16-digit nonces with one digit in the second.
    runs = segments(LAYOUT_LATEST, b"n" * 49)
    assert runs[6] == (10**15, LIMIT - 10**15)
    # Structs-style and long prefixes start with the 16-digit nonces; 52 bytes first has the
    # 999 nonces of up to 3 digits that fit in one block.
    for length in (18, 22, 39, 120, 122):
        assert segments(LAYOUT_LATEST, b"s" * length)[0] == (10**15, LIMIT - 10**15)
    assert segments(LAYOUT_LATEST, b"s" * 52)[3] == (10**15, LIMIT - 10**15)


def test_depends_only_on_the_prefix_length_mod_64() -> None:
    rng = random.Random(1)
    for length in range(0, 200, 7):
        a, b = rng.randbytes(length), rng.randbytes(length + 64)
        assert segments(LAYOUT_LATEST, a) == segments(LAYOUT_LATEST, b)
        assert segments(LAYOUT_LATEST, a) == segments(LAYOUT_LATEST, b"\xff" * length)


def test_latest_is_frozen() -> None:
    # A job created under layout 2 resumes in the same order forever: a different order needs
    # a new layout version, never a change to this one.
    table = repr([segments(LAYOUT_LATEST, b"x" * tail) for tail in range(64)]).encode()
    assert hashlib.sha256(table).hexdigest() == (
        "7bc675cc05f005077d3ddbe1b88b199d87bbdde5306cac9aae704b57c8a1d67b"
    )


def test_bounds_are_refused() -> None:
    prefix = b"5-42BUILD1000NONCE"
    assert nonce_at(LAYOUT_LATEST, prefix, 0) == 10**15
    assert nonce_at(LAYOUT_LATEST, prefix, LIMIT - 1) == 9  # the last run: one digit
    for position in (-1, LIMIT, LIMIT + 1, 2**64):
        with pytest.raises(ValueError, match="outside"):
            nonce_at(LAYOUT_LATEST, prefix, position)
    with pytest.raises(ValueError, match="outside"):
        list(nonce_runs(LAYOUT_LATEST, prefix, LIMIT - 5, 6))
    assert list(nonce_runs(LAYOUT_LATEST, prefix, LIMIT - 5, 5)) == [(5, 5)]
    assert max(nonce_at(LAYOUT_LATEST, prefix, p - 1) for p in boundaries(prefix)[1:]) == (
        MAX_SAFE_NONCE
    )


@settings(max_examples=300, deadline=None)
@given(
    length=st.integers(min_value=0, max_value=300),
    data=st.data(),
    count=st.integers(min_value=0, max_value=60),
)
def test_runs_are_nonce_at_position_by_position(
    length: int, data: st.DataObject, count: int
) -> None:
    prefix = b"r" * length
    edges = boundaries(prefix)
    start = data.draw(
        st.one_of(
            st.integers(min_value=0, max_value=LIMIT - count),
            st.builds(
                lambda edge, off: min(max(0, edge + off), LIMIT - count),
                st.sampled_from(edges),
                st.integers(-70, 70),
            ),
        )
    )
    runs = list(nonce_runs(LAYOUT_LATEST, prefix, start, count))
    flat = [first + i for first, n in runs for i in range(n)]
    assert flat == [nonce_at(LAYOUT_LATEST, prefix, p) for p in range(start, start + count)]
    assert all(n > 0 for _, n in runs)
