"""`pow-mcp bench` (pow.bench): its figures, and what it says about the kernel it runs."""

from __future__ import annotations

from pow_mcp.pow import bench


def test_a_pool_rate_comes_out_of_any_short_run() -> None:
    # Shorter than a worker takes to start and report: it still needs two progress samples.
    assert bench.pool_rate(1, 0.01) > 0
