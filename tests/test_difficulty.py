"""Structs' age-based difficulty and the first block at which a proof is accepted."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pow_mcp.pow.difficulty import age_difficulty, eta_seconds, first_valid_age, valid_from_block

RANGES = [10, 100, 1800, 36000, 252000]


def spec_formula(age: int, r: float) -> int:
    return 64 if age <= 1 else max(1, 64 - int(math.log10(age) / math.log10(r) * 63))


@pytest.mark.parametrize("r", RANGES)
def test_edges(r: int) -> None:
    assert age_difficulty(0, r) == 64
    assert age_difficulty(1, r) == 64
    assert age_difficulty(2, r) == 64 - int(math.log10(2) / math.log10(r) * 63)
    assert age_difficulty(2, r) < 64
    assert age_difficulty(r, r) == 1
    assert age_difficulty(r + 1, r) == 1
    assert age_difficulty(r * 1000, r) == 1


def test_known_values() -> None:
    assert age_difficulty(10, 100) == 33  # half-way in log terms: 64 - 31
    assert age_difficulty(1799, 1800) == 64 - 62
    assert age_difficulty(60, 1800) == 64 - int(math.log10(60) / math.log10(1800) * 63)


@given(st.integers(min_value=0, max_value=10**7), st.sampled_from([*RANGES, 1.5, 2, 7.25]))
def test_matches_spec_formula_and_never_rises(age: int, r: float) -> None:
    assert age_difficulty(age, r) == spec_formula(age, r)
    assert age_difficulty(age + 1, r) <= age_difficulty(age, r)


@pytest.mark.parametrize("r", RANGES)
@pytest.mark.parametrize("zeros", [1, 2, 5, 8, 17, 40, 63])
def test_first_valid_age_is_the_first(zeros: int, r: int) -> None:
    age = first_valid_age(zeros, r)
    assert age is not None
    assert age_difficulty(age, r) <= zeros
    assert age <= 1 or age_difficulty(age - 1, r) > zeros


def test_valid_from_block_edges() -> None:
    assert valid_from_block(1000, 64, 1800) == 1000  # even age 0 accepts 64 zeros
    assert valid_from_block(1000, 0, 1800) is None  # difficulty never drops below 1
    assert valid_from_block(1000, 1, 1800) == 2800  # difficulty 1 is reached at age R


def test_bad_range_is_refused() -> None:
    for bad in (1, 0.5, -3):
        with pytest.raises(ValueError, match="greater than 1"):
            age_difficulty(5, bad)


def test_eta() -> None:
    assert eta_seconds(2, 0, 256.0) == 1.0
    assert eta_seconds(2, 128, 256.0) == 0.5
    assert eta_seconds(2, 1000, 256.0) == 1.0  # past the mean: memoryless
    assert eta_seconds(2, 0, 0.0) is None
