"""Search kernels and their registry.

A kernel hashes a range of positions of a job's search order (`pow.layout`) and reports the
first proof and the best hash (`ChunkResult`). Every kernel gives exactly the results of
`HashlibKernel` for the same inputs; faster ones only change the speed. `get_kernel("auto")`
picks the fastest one this machine can run. Kernels are imported here, never the other way
round.
"""

from __future__ import annotations

import logging
import os

from pow_mcp.pow.kernels import native
from pow_mcp.pow.kernels.base import ChunkResult, SearchKernel, check_search_args
from pow_mcp.pow.kernels.hashlib_kernel import HashlibKernel

__all__ = [
    "ChunkResult",
    "HashlibKernel",
    "SearchKernel",
    "available_kernels",
    "check_search_args",
    "get_kernel",
]

log = logging.getLogger(__name__)
_warned = False


def available_kernels() -> dict[str, SearchKernel]:
    """Kernels this machine can run, fastest first."""
    kernels = native.kernels()
    kernels[HashlibKernel.name] = HashlibKernel()
    return kernels


def get_kernel(name: str | None = None) -> SearchKernel:
    """The kernel called `name`, or the fastest available for "auto" / None.

    `POW_KERNEL` in the environment overrides "auto", so the fallback can be forced.
    """
    global _warned
    wanted = name or os.environ.get("POW_KERNEL") or "auto"
    kernels = available_kernels()
    if wanted == "auto":
        kernel = next(iter(kernels.values()))
        reason = native.missing_reason()
        if reason and not _warned:
            _warned = True
            log.warning("%s", reason)
        return kernel
    try:
        return kernels[wanted]
    except KeyError:
        raise ValueError(
            f"unknown or unavailable kernel {wanted!r}; available: {', '.join(kernels)}"
        ) from None
