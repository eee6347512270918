"""Compiled search kernels from the optional C extension `pow_mcp.pow.kernels._sha256`.

`kernels()` lists the ones this CPU can run, fastest first: "sha-ni" (x86 SHA extensions),
"avx2" (8 lanes in 256-bit vectors), "armv8-sha2" (ARMv8 cryptography extensions),
"scalar-c" (portable C); and "sha-ni+sse" (SHA-NI and SSE lanes in one instruction stream),
which is in `MEASURED`: faster than sha-ni only on some CPUs, so "auto" takes it only where
it measures faster (pow.kernels.get_kernel). Without the extension (no C compiler at install
time) it returns {} and the registry falls back to hashlib; `missing_reason()` says why and
how to fix it.

The C code takes runs of consecutive nonces up to 2**64 - 1; under the plain layout, the part
of a range beyond that is hashed by the hashlib kernel, so results are always exactly those of
`HashlibKernel`.
"""

from __future__ import annotations

from collections.abc import Iterable
from types import ModuleType

from pow_mcp.pow.kernels.base import ChunkResult, SearchKernel, check_search_args, search_runs
from pow_mcp.pow.kernels.hashlib_kernel import search_nonces
from pow_mcp.pow.layout import LAYOUT_PLAIN, nonce_runs

_ext: ModuleType | None
_import_error: str | None = None
try:
    from pow_mcp.pow.kernels import _sha256 as _ext
except ImportError as exc:  # not built: no compiler, or an unsupported platform
    _ext = None
    _import_error = str(exc)

C_NONCE_LIMIT = 2**64  # the C code takes nonces below this

# Engines whose place in the list says nothing: "auto" runs one only where it measures faster
# than the first engine not in this set, on the CPU it runs on.
MEASURED = frozenset({"sha-ni+sse"})

# How to get the compiled kernel. Never "pip install pow-mcp": pow-mcp is on no package index,
# and a package of that name there would be someone else's.
FAST_PATH_HELP = (
    "To get the compiled kernel (about 20x faster): install a pow-mcp wheel built for this "
    "platform (it carries the kernel), or install a C compiler and Python's headers "
    "(Debian/Ubuntu: apt install build-essential python3-dev; Fedora: dnf install gcc "
    "python3-devel; macOS: xcode-select --install; Windows: the Microsoft C++ Build Tools) and "
    "reinstall pow-mcp from its checkout or sdist (pip install --force-reinstall --no-cache-dir "
    "/path/to/pow-mcp; in the checkout: make clean run)"
)


def missing_reason() -> str | None:
    """Why the extension is unavailable, with how to get it; None when it is there."""
    if _ext is not None:
        return None
    return (
        f"the compiled SHA-256 kernel (pow_mcp.pow.kernels._sha256) is not installed "
        f"({_import_error}), so hashing uses the pure-Python hashlib kernel, about 20x slower. "
        f"{FAST_PATH_HELP}"
    )


class CompiledKernel:
    """One engine of the C extension, with the `SearchKernel` interface."""

    def __init__(self, name: str) -> None:
        if _ext is None or name not in _ext.engines():
            raise ValueError(f"compiled kernel {name!r} is not available on this machine")
        self.name = name

    def __repr__(self) -> str:
        return f"CompiledKernel({self.name!r})"

    def search(
        self, prefix: bytes, start: int, count: int, difficulty: int, layout: int = LAYOUT_PLAIN
    ) -> ChunkResult:
        check_search_args(prefix, start, count, difficulty, layout)
        return search_runs(
            self._runs(nonce_runs(layout, prefix, start, count)),
            difficulty,
            lambda first, n: self._search_nonces(prefix, first, n, difficulty),
        )

    @staticmethod
    def _runs(runs: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
        # Nonces from 2**64 on (plain layout only) go to hashlib in runs of their own.
        out: list[tuple[int, int]] = []
        for first, count in runs:
            in_c = max(0, min(count, C_NONCE_LIMIT - first))
            if in_c:
                out.append((first, in_c))
            if count > in_c:
                out.append((first + in_c, count - in_c))
        return out

    def _search_nonces(self, prefix: bytes, first: int, count: int, difficulty: int) -> ChunkResult:
        if first >= C_NONCE_LIMIT:
            return search_nonces(prefix, first, count, difficulty)
        assert _ext is not None  # checked in __init__
        return ChunkResult(*_ext.search(self.name, prefix, first, count, difficulty))


def kernels() -> dict[str, SearchKernel]:
    """Compiled kernels usable on this machine, fastest first ({} without the extension)."""
    if _ext is None:
        return {}
    return {name: CompiledKernel(name) for name in _ext.engines()}
