"""The kernel as it was before the search layouts (commit 4b62c38), built from git, so that
benchmarks can measure it in the same run as today's.

Usage: python benchmarks/baseline.py [REV]   (prints the path of the built module)

It needs git history and a C compiler with Python's headers; the module is built once into
build/baseline-REV/ with the flags setup.py uses.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import shlex
import subprocess
import sys
import sysconfig
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parent.parent
BASELINE_REV = "4b62c38"  # pow/_sha256.c: SHA-NI 4-way, AVX2 8-lane, scalar; plain order only
FLAGS = ["-O3", "-Wall", "-Wextra", "-Wno-unused-parameter"]


def build(rev: str = BASELINE_REV) -> Path:
    """Path of the baseline extension, built if needed."""
    out = ROOT / "build" / f"baseline-{rev}"
    suffix = sysconfig.get_config_var("EXT_SUFFIX") or ".so"
    module = out / f"_sha256{suffix}"
    if module.exists():
        return module
    out.mkdir(parents=True, exist_ok=True)
    source = subprocess.run(
        ["git", "show", f"{rev}:pow/_sha256.c"], cwd=ROOT, check=True, capture_output=True
    ).stdout
    (out / "_sha256.c").write_bytes(source)
    cc = shlex.split(sysconfig.get_config_var("CC") or "cc")
    include = sysconfig.get_paths()["include"]
    source_file = str(out / "_sha256.c")
    subprocess.run(
        [*cc, *FLAGS, "-fPIC", "-shared", f"-I{include}", source_file, "-o", str(module)],
        check=True,
    )
    return module


def load(rev: str = BASELINE_REV) -> ModuleType:
    """The baseline extension, imported as `_sha256` (not as pow_mcp.pow.kernels._sha256)."""
    path = build(rev)
    loader = importlib.machinery.ExtensionFileLoader("_sha256", str(path))
    spec = importlib.util.spec_from_loader("_sha256", loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


def rounds_per_hash(engine: str, prefix_len: int, digits: int) -> float:
    """SHA-256 rounds per hash of the baseline engine (its rules, as in its source): 64 per
    block, less, for avx2, the words before the last 3 digits when at least one."""
    rest = prefix_len % 64
    tail = rest + digits
    blocks = 1 if tail + 9 <= 64 else 2
    straddle = tail - 1 >= 64
    vb = 64 if straddle else 0
    skip = 0
    if engine == "avx2":
        stable = tail - 3 if digits > 3 else rest
        stable_in_vb = stable - vb if stable > vb else 0
        skip = stable_in_vb // 4 if stable_in_vb >= 4 else 0
    rounds = 64.0 - skip
    if blocks == 2 and not straddle:
        rounds += 64
    if straddle:
        rounds += 64 / 10 ** min(tail - 64, digits)
    return rounds


if __name__ == "__main__":
    print(build(*sys.argv[1:2]))
