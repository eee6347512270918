"""Search kernels and their registry.

A kernel hashes a range of positions of a job's search order (`pow.layout`) and reports the
first proof and the best hash (`ChunkResult`). Every kernel gives exactly the results of
`HashlibKernel` for the same inputs; faster ones only change the speed. `get_kernel("auto")`
picks the fastest one this machine can run: the first listed, unless an engine that is fast
only on some CPUs (`native.MEASURED`) measures faster here, once per process (`choose`).
Kernels are imported here, never the other way round.
"""

from __future__ import annotations

import logging
import os
import statistics
import time
from collections.abc import Callable

from pow_mcp.pow.kernels import native
from pow_mcp.pow.kernels.base import ChunkResult, SearchKernel, check_search_args
from pow_mcp.pow.kernels.hashlib_kernel import HashlibKernel
from pow_mcp.pow.layout import LAYOUT_LATEST

__all__ = [
    "ChunkResult",
    "HashlibKernel",
    "SearchKernel",
    "available_kernels",
    "check_search_args",
    "choose",
    "get_kernel",
]

log = logging.getLogger(__name__)
_warned = False
_auto: dict[tuple[str, ...], str] = {}  # what "auto" chose in this process, per kernel list

# How "auto" measures: where a Structs job spends its hashes (position 10**9 of the latest
# layout), in interleaved rounds of about MEASURE_SECONDS per kernel, taking the median ratio;
# a contender must be faster by WIN_MARGIN, so that noise never swaps kernels of equal speed.
# The rounds are there for close calls: a first round below CLEAR_LOSS decides alone (every
# server start measures, and a contender at a third of the speed needs no median).
MEASURE_PREFIX = b"5-42BUILD1000NONCE"
MEASURE_POSITION = 10**9
MEASURE_SECONDS = 0.02
MEASURE_ROUNDS = 3
WIN_MARGIN = 1.03
CLEAR_LOSS = 0.75
Rate = Callable[[SearchKernel], float]


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
        reason = native.missing_reason()
        if reason and not _warned:
            _warned = True
            log.warning("%s", reason)
        return kernels[_auto_name(kernels)]
    try:
        return kernels[wanted]
    except KeyError:
        raise ValueError(
            f"unknown or unavailable kernel {wanted!r}; available: {', '.join(kernels)}"
        ) from None


def _auto_name(kernels: dict[str, SearchKernel]) -> str:
    key = tuple(kernels)
    if key not in _auto:
        _auto[key] = choose(kernels)
    return _auto[key]


def rate(kernel: SearchKernel, seconds: float = MEASURE_SECONDS) -> float:
    """Hashes per second of `kernel` on a Structs prefix, at least `seconds` of it."""
    position, count = MEASURE_POSITION, 4096
    began = time.perf_counter()
    while (elapsed := time.perf_counter() - began) < seconds:
        kernel.search(MEASURE_PREFIX, position, count, 64, LAYOUT_LATEST)
        position += count
        count *= 2
    return (position - MEASURE_POSITION) / elapsed


def choose(kernels: dict[str, SearchKernel], measure: Rate = rate) -> str:
    """The kernel "auto" runs: the first listed that is not in `native.MEASURED`, or one of
    those where it measures at least WIN_MARGIN times as fast on this CPU."""
    default = next(name for name in kernels if name not in native.MEASURED)
    best, best_ratio = default, WIN_MARGIN
    for name in (n for n in kernels if n in native.MEASURED):
        ratios = []
        for _ in range(MEASURE_ROUNDS):  # interleaved: a busy moment hits both sides alike
            before = measure(kernels[default])
            contender = measure(kernels[name])
            ratios.append(2 * contender / (before + measure(kernels[default])))
            if ratios[0] < CLEAR_LOSS:
                break
        ratio = statistics.median(ratios)
        log.info("kernel %s measures %.2fx %s on this CPU", name, ratio, default)
        if ratio >= best_ratio:
            best, best_ratio = name, ratio
    return best
