"""`pow-mcp bench` (pow.bench): its figures, and what it says about the kernel it runs."""

from __future__ import annotations

import re

import pytest

from pow_mcp.pow import bench
from pow_mcp.pow.kernels import native


def test_a_pool_rate_comes_out_of_any_short_run() -> None:
    # Shorter than a worker takes to start and report: it still needs two progress samples.
    assert bench.pool_rate(1, 0.01) > 0


def test_on_the_hashlib_fallback_it_says_so_first_and_how_to_get_the_fast_kernel_last(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(native, "_ext", None)
    monkeypatch.setattr(native, "_import_error", "No module named 'pow_mcp.pow.kernels._sha256'")
    monkeypatch.setattr("pow_mcp.pow.kernels._warned", True)  # its log line is tested elsewhere
    monkeypatch.delenv("POW_KERNEL", raising=False)
    lines: list[str] = []
    bench.run(0.01, 1, out=lines.append, rounds=1)
    kernel = next(line for line in lines if line.startswith("kernel: "))
    assert kernel.startswith("kernel: hashlib, the slow fallback: the compiled kernel is not ")
    assert "No module named" in kernel
    last = lines[-1]
    assert last.startswith("kernel: hashlib, the slow fallback. To get the compiled kernel")
    for how in ("a pow-mcp wheel built for this platform", "C compiler", "xcode-select --install"):
        assert how in last
    # Never the bare name: pow-mcp is on no package index.
    assert "pip install --force-reinstall --no-cache-dir /path/to/pow-mcp" in last
    assert not re.search(r"pip install (--[a-z-]+ )*pow-mcp\b", last)


def test_with_the_compiled_kernel_it_names_the_engines_and_gives_no_advice() -> None:
    if native._ext is None:
        pytest.skip("the extension is not built")
    assert bench.kernel_path().split(" (")[1].startswith("compiled engines this CPU runs: ")
