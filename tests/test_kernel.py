"""The hashlib search kernel against the brute-force reference."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pow.kernel import ChunkResult, HashlibKernel, available_kernels, get_kernel
from pow.scheme import verify
from tests.reference import ref_search

kernel = HashlibKernel()


def as_tuple(r: ChunkResult) -> tuple[int | None, int, int, int, str]:
    return (r.found_nonce, r.hashes, r.best_nonce, r.best_zeros, r.best_hash)


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
def test_matches_reference(prefix: bytes, start: int, count: int, difficulty: int) -> None:
    assert as_tuple(kernel.search(prefix, start, count, difficulty)) == ref_search(
        prefix, start, count, difficulty
    )


def test_range_crossing_nine_to_ten_digits() -> None:
    start = 999_999_000
    assert as_tuple(kernel.search(b"5-42BUILD1000NONCE", start, 2000, 3)) == ref_search(
        b"5-42BUILD1000NONCE", start, 2000, 3
    )


@pytest.mark.parametrize("difficulty", [1, 2, 3, 4, 5])
def test_proofs_verify(difficulty: int) -> None:
    r = kernel.search(b"abc-", 0, 16 ** (difficulty + 2), difficulty)
    assert r.found_nonce is not None
    check = verify("abc-", r.found_nonce, difficulty, claimed_hash=r.best_hash)
    assert check.valid and check.hash_matches


def test_best_is_the_earliest_with_most_zeros() -> None:
    r = kernel.search(b"abc-", 0, 5000, 64)
    ref = ref_search(b"abc-", 0, 5000, 64)
    assert r.found_nonce is None and r.hashes == 5000
    assert (r.best_nonce, r.best_zeros) == (ref[2], ref[3])


def test_bad_arguments() -> None:
    for args in ((b"x", -1, 1, 1), (b"x", 0, 0, 1), (b"x", 0, 1, 0), (b"x", 0, 1, 65)):
        with pytest.raises(ValueError):
            kernel.search(*args)


def test_hashlib_is_always_available_and_can_be_forced(monkeypatch: pytest.MonkeyPatch) -> None:
    assert "hashlib" in available_kernels()
    monkeypatch.setenv("POW_KERNEL", "hashlib")
    assert get_kernel().name == "hashlib"
    with pytest.raises(ValueError, match="available"):
        get_kernel("no-such-kernel")
