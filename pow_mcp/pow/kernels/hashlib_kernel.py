"""The pure-Python kernel on hashlib: the reference every other kernel must match exactly,
and the last fallback."""

from __future__ import annotations

import hashlib

from pow_mcp.pow.kernels.base import ChunkResult, check_search_args, search_runs
from pow_mcp.pow.layout import LAYOUT_PLAIN, nonce_runs
from pow_mcp.pow.scheme import MAX_DIFFICULTY, digest_leading_zeros


def _below(zeros: int) -> bytes:
    """Digests strictly below this have at least `zeros` leading hex zeros."""
    if zeros > MAX_DIFFICULTY:
        return b""  # nothing compares below the empty string
    return (1 << (256 - 4 * zeros)).to_bytes(33, "big")[1:] if zeros else b"\xff" * 33


def search_nonces(prefix: bytes, start: int, count: int, difficulty: int) -> ChunkResult:
    """Hash the nonces start .. start+count-1 in order; stop at the first proof."""
    # The prefix's SHA-256 state is computed once; each nonce only copies it.
    copy = hashlib.sha256(prefix).copy
    best_zeros, best_nonce, best_digest = -1, start, b""
    better = _below(0)  # one byte comparison per hash in the common case
    for nonce in range(start, start + count):
        h = copy()
        h.update(str(nonce).encode())
        digest = h.digest()
        if digest < better:
            best_zeros = digest_leading_zeros(digest)
            best_nonce, best_digest = nonce, digest
            if best_zeros >= difficulty:
                return ChunkResult(nonce, nonce - start + 1, nonce, best_zeros, digest.hex())
            better = _below(best_zeros + 1)
    return ChunkResult(None, count, best_nonce, best_zeros, best_digest.hex())


class HashlibKernel:
    name = "hashlib"

    def search(
        self, prefix: bytes, start: int, count: int, difficulty: int, layout: int = LAYOUT_PLAIN
    ) -> ChunkResult:
        check_search_args(prefix, start, count, difficulty, layout)
        return search_runs(
            nonce_runs(layout, prefix, start, count),
            difficulty,
            lambda first, n: search_nonces(prefix, first, n, difficulty),
        )
