"""Structs' age-based difficulty: the required zeros fall as blocks pass."""

from __future__ import annotations

import math

from pow_mcp.pow.scheme import MAX_DIFFICULTY


def validate_range(difficulty_range: float) -> float:
    if not difficulty_range > 1:
        raise ValueError(f"difficulty_range must be greater than 1, got {difficulty_range}")
    return difficulty_range


def age_difficulty(age: int, difficulty_range: float) -> int:
    """difficulty(age, R): 64 for age <= 1, then max(1, 64 - int(log10(age)/log10(R)*63))."""
    validate_range(difficulty_range)
    if age <= 1:
        return MAX_DIFFICULTY
    drop = int(math.log10(age) / math.log10(difficulty_range) * 63)
    return max(1, MAX_DIFFICULTY - drop)


def first_valid_age(zeros: int, difficulty_range: float) -> int | None:
    """Smallest age at which a hash with `zeros` leading zeros is accepted (None: never)."""
    validate_range(difficulty_range)
    if zeros >= MAX_DIFFICULTY:
        return 0
    if zeros < 1:
        return None
    # difficulty is non-increasing in age and reaches 1 by age ceil(R), so search [2, hi].
    hi = 2
    while age_difficulty(hi, difficulty_range) > zeros:
        hi *= 2
    lo = 2
    while lo < hi:
        mid = (lo + hi) // 2
        if age_difficulty(mid, difficulty_range) <= zeros:
            hi = mid
        else:
            lo = mid + 1
    return lo


def valid_from_block(block_start: int, zeros: int, difficulty_range: float) -> int | None:
    """First block height at which a proof with `zeros` leading zeros is accepted."""
    age = first_valid_age(zeros, difficulty_range)
    return None if age is None else block_start + age


def expected_hashes(difficulty: int) -> int:
    """Mean number of hashes to meet `difficulty`: each hex digit is 0 with chance 1/16."""
    return int(16**difficulty)


def eta_seconds(difficulty: int, hashes: int, hashrate: float) -> float | None:
    """Seconds until the expected number of hashes is done at `hashrate` (None if unknown).

    The search is memoryless, so past the mean the honest answer is another full mean.
    """
    if hashrate <= 0:
        return None
    expected = expected_hashes(difficulty)
    remaining = expected - hashes if hashes < expected else expected
    return remaining / hashrate
