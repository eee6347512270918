"""The plainest possible implementation of the scheme, to check everything else against."""

from __future__ import annotations

import hashlib

from pow_mcp.pow.layout import LAYOUT_PLAIN, nonce_at


def ref_hash(message: bytes) -> str:
    return hashlib.sha256(message).hexdigest()


def ref_zeros(hex_hash: str) -> int:
    n = 0
    while n < len(hex_hash) and hex_hash[n] == "0":
        n += 1
    return n


def ref_search(
    prefix: bytes, start: int, count: int, difficulty: int, layout: int = LAYOUT_PLAIN
) -> tuple[int | None, int, int, int, str]:
    """(found_nonce, hashes, best_nonce, best_zeros, best_hash) by brute force over positions
    start .. start+count-1 of `layout`, one `nonce_at` per position."""
    best = (-1, 0, "")
    for position in range(start, start + count):
        nonce = nonce_at(layout, prefix, position)
        h = ref_hash(prefix + str(nonce).encode())
        z = ref_zeros(h)
        if z > best[0]:
            best = (z, nonce, h)
        if z >= difficulty:
            return nonce, position - start + 1, nonce, z, h
    return None, count, best[1], best[0], best[2]
