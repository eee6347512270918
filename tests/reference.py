"""The plainest possible implementation of the scheme, to check everything else against."""

from __future__ import annotations

import hashlib


def ref_hash(message: bytes) -> str:
    return hashlib.sha256(message).hexdigest()


def ref_zeros(hex_hash: str) -> int:
    n = 0
    while n < len(hex_hash) and hex_hash[n] == "0":
        n += 1
    return n


def ref_search(
    prefix: bytes, start: int, count: int, difficulty: int
) -> tuple[int | None, int, int, int, str]:
    """(found_nonce, hashes, best_nonce, best_zeros, best_hash) by brute force."""
    best = (-1, start, "")
    for nonce in range(start, start + count):
        h = ref_hash(prefix + str(nonce).encode())
        z = ref_zeros(h)
        if z > best[0]:
            best = (z, nonce, h)
        if z >= difficulty:
            return nonce, nonce - start + 1, nonce, z, h
    return None, count, best[1], best[0], best[2]
