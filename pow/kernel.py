"""Kept so that `from pow.kernel import ...` goes on working: the kernels live in pow.kernels."""

from pow_mcp.pow.kernels import (
    ChunkResult,
    HashlibKernel,
    SearchKernel,
    available_kernels,
    check_search_args,
    get_kernel,
)

__all__ = [
    "ChunkResult",
    "HashlibKernel",
    "SearchKernel",
    "available_kernels",
    "check_search_args",
    "get_kernel",
]
