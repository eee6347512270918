"""Compiled search kernels from the optional C extension `pow._sha256`.

`kernels()` lists the ones this CPU can run, fastest first: "sha-ni" (x86 SHA extensions),
"avx2" (8 lanes in 256-bit vectors), "scalar-c" (portable C). Without the extension (no C
compiler at install time) it returns {} and pow.kernel falls back to hashlib.

The C code handles nonces up to 2**64 - 1; the part of a range beyond that is hashed by the
hashlib kernel, so results are always exactly those of `HashlibKernel`.
"""

from __future__ import annotations

from types import ModuleType

from pow.kernel import ChunkResult, HashlibKernel, SearchKernel, check_search_args

_ext: ModuleType | None
try:
    from pow import _sha256 as _ext
except ImportError:  # not built: no compiler, or an unsupported platform
    _ext = None

C_NONCE_LIMIT = 2**64  # the C code takes nonces below this


class CompiledKernel:
    """One engine of the C extension, with the `SearchKernel` interface."""

    def __init__(self, name: str) -> None:
        if _ext is None or name not in _ext.engines():
            raise ValueError(f"compiled kernel {name!r} is not available on this machine")
        self.name = name

    def __repr__(self) -> str:
        return f"CompiledKernel({self.name!r})"

    def search(self, prefix: bytes, start: int, count: int, difficulty: int) -> ChunkResult:
        check_search_args(start, count, difficulty)
        assert _ext is not None  # checked in __init__
        # The C code covers [start, start + in_c); hashlib takes whatever lies beyond 2**64 - 1.
        in_c = min(count, C_NONCE_LIMIT - start, C_NONCE_LIMIT - 1) if start < C_NONCE_LIMIT else 0
        if in_c == 0:
            return HashlibKernel().search(prefix, start, count, difficulty)
        found, hashes, best_nonce, best_zeros, best_hash = _ext.search(
            self.name, prefix, start, in_c, difficulty
        )
        first = ChunkResult(found, hashes, best_nonce, best_zeros, best_hash)
        if found is not None or in_c == count:
            return first
        rest = HashlibKernel().search(prefix, start + in_c, count - in_c, difficulty)
        best = rest if rest.best_zeros > first.best_zeros else first
        return ChunkResult(
            rest.found_nonce, in_c + rest.hashes, best.best_nonce, best.best_zeros, best.best_hash
        )


def kernels() -> dict[str, SearchKernel]:
    """Compiled kernels usable on this machine, fastest first ({} without the extension)."""
    if _ext is None:
        return {}
    return {name: CompiledKernel(name) for name in _ext.engines()}
