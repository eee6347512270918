"""Search kernels: hash a contiguous nonce range and report the first proof and the best hash.

Every kernel gives exactly the results of `HashlibKernel` for the same inputs; faster ones
only change the speed. `get_kernel("auto")` picks the fastest one this machine can run.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from typing import Protocol

from pow.scheme import MAX_DIFFICULTY, digest_leading_zeros


@dataclass(frozen=True, slots=True)
class ChunkResult:
    """What one search over [start, start + count) found.

    `hashes` is how many nonces were hashed: count, or up to and including the proof.
    `best_*` is the earliest nonce with the most leading zeros among those hashed.
    """

    found_nonce: int | None
    hashes: int
    best_nonce: int
    best_zeros: int
    best_hash: str


class SearchKernel(Protocol):
    name: str

    def search(self, prefix: bytes, start: int, count: int, difficulty: int) -> ChunkResult:
        """Hash prefix+str(n) for n in [start, start+count); stop at the first n meeting
        `difficulty` leading hex zeros."""
        ...


def _below(zeros: int) -> bytes:
    """Digests strictly below this have at least `zeros` leading hex zeros."""
    if zeros > MAX_DIFFICULTY:
        return b""  # nothing compares below the empty string
    return (1 << (256 - 4 * zeros)).to_bytes(33, "big")[1:] if zeros else b"\xff" * 33


def check_search_args(start: int, count: int, difficulty: int) -> None:
    if start < 0:
        raise ValueError("start must be >= 0")
    if count < 1:
        raise ValueError("count must be >= 1")
    if not 1 <= difficulty <= MAX_DIFFICULTY:
        raise ValueError(f"difficulty must be 1..{MAX_DIFFICULTY}")


class HashlibKernel:
    """Pure-Python kernel on hashlib: the reference and the last fallback."""

    name = "hashlib"

    def search(self, prefix: bytes, start: int, count: int, difficulty: int) -> ChunkResult:
        check_search_args(start, count, difficulty)
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


def available_kernels() -> dict[str, SearchKernel]:
    """Kernels this machine can run, fastest first."""
    from pow.native import kernels as native_kernels  # late: pow.native imports this module

    kernels = native_kernels()
    kernels[HashlibKernel.name] = HashlibKernel()
    return kernels


def get_kernel(name: str | None = None) -> SearchKernel:
    """The kernel called `name`, or the fastest available for "auto" / None.

    `POW_KERNEL` in the environment overrides "auto", so the fallback can be forced.
    """
    wanted = name or os.environ.get("POW_KERNEL") or "auto"
    kernels = available_kernels()
    if wanted == "auto":
        return next(iter(kernels.values()))
    try:
        return kernels[wanted]
    except KeyError:
        raise ValueError(
            f"unknown or unavailable kernel {wanted!r}; available: {', '.join(kernels)}"
        ) from None
