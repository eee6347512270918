"""Compiled search kernels. None are built yet; `kernels()` lists those this CPU can run."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pow.kernel import SearchKernel


def kernels() -> dict[str, SearchKernel]:
    """Compiled kernels usable on this machine, fastest first."""
    return {}
