"""Building the kernel: with gcc and with clang, without Python.h, and not at all.

The core (pow_mcp/pow/kernels/c/sha256_search.c) builds with any C compiler; its known-answer driver
(kat.c) checks every engine the CPU runs against a reference SHA-256. The extension builds
with both compilers through setup.py, as pip builds it; where no compiler works, setup.py
still succeeds, without the extension, and says how to get it.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.test_native_kernel import cpu_flags

ROOT = Path(__file__).resolve().parent.parent
C_DIR = ROOT / "pow_mcp" / "pow" / "kernels" / "c"
CORE = [str(C_DIR / "kat.c"), str(C_DIR / "sha256_search.c")]
COMPILERS = ["gcc", "clang"]
WARNINGS = ["-Wall", "-Wextra", "-Werror"]


def need(compiler: str) -> str:
    path = shutil.which(compiler)
    if path is None:
        pytest.skip(f"{compiler} is not installed (.ci/run installs it)")
    return path


@dataclass(frozen=True)
class Build:
    """`setup.py build_ext` with one compiler, as pip runs it: its output and what it made."""

    cc: str
    output: subprocess.CompletedProcess[str]
    where: Path

    def extension(self) -> Path:
        [so] = (self.where / "lib" / "pow_mcp" / "pow" / "kernels").glob("_sha256*")
        return so

    def core_object(self) -> Path:
        [obj] = (self.where / "tmp").rglob("sha256_search.o")
        return obj


@pytest.fixture(scope="session")
def builds() -> dict[str, Build]:
    """The builds, one per compiler, whatever order the tests run in (xdist may run other
    modules' tests between them): compiling the unrolled engines is most of a test's time
    (20 s with gcc here)."""
    return {}


@pytest.fixture(params=COMPILERS)
def build(
    request: pytest.FixtureRequest,
    builds: dict[str, Build],
    tmp_path_factory: pytest.TempPathFactory,
) -> Build:
    """`setup.py build_ext` with the compiler of the test's parameter."""
    compiler: str = request.param
    if compiler not in builds:
        cc = need(compiler)
        where = tmp_path_factory.mktemp(f"build-{compiler}")
        builds[compiler] = Build(cc, setup_py_build_ext(where, cc), where)
    return builds[compiler]


def test_core_builds_without_python_and_matches_the_reference(build: Build, tmp_path: Path) -> None:
    # No include path for Python.h: the core must not need it (-fsyntax-only: the build
    # below compiled it).
    subprocess.run([build.cc, "-fsyntax-only", *WARNINGS, *CORE], check=True)
    # The known-answer driver linked with the core as the extension build compiled it.
    kat = tmp_path / "kat"
    subprocess.run(
        [build.cc, "-O2", *WARNINGS, "-o", str(kat), CORE[0], str(build.core_object())],
        check=True,
    )
    run = subprocess.run([str(kat)], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "all engines match the reference" in run.stdout
    assert "engine scalar-c    ok" in run.stdout
    if sys.platform == "linux" and "sha_ni" in cpu_flags():
        assert "engine sha-ni      ok" in run.stdout
    if sys.platform == "linux" and "avx2" in cpu_flags():
        assert "engine avx2        ok" in run.stdout


def test_portable_build_has_only_the_portable_engine(tmp_path: Path) -> None:
    cc = need("gcc")
    kat = tmp_path / "kat"
    subprocess.run([cc, "-O2", *WARNINGS, "-DPOW_PORTABLE_ONLY", "-o", str(kat), *CORE], check=True)
    run = subprocess.run([str(kat), "--require", "scalar-c"], capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr
    assert run.stdout.count("engine ") == 1
    refused = subprocess.run([str(kat), "--require", "sha-ni"], capture_output=True, text=True)
    assert refused.returncode == 1 and "cannot run here" in refused.stderr


def setup_py_build_ext(tmp_path: Path, cc: str) -> subprocess.CompletedProcess[str]:
    """`setup.py build_ext` as pip runs it, into tmp_path, with CC=cc."""
    env = {**os.environ, "CC": cc}
    env.pop("LDSHARED", None)
    return subprocess.run(
        [
            sys.executable,
            "setup.py",
            "-q",
            "build_ext",
            "--build-lib",
            str(tmp_path / "lib"),
            "--build-temp",
            str(tmp_path / "tmp"),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


CHECK_BUILT = """
import hashlib, importlib.machinery, importlib.util, sys
loader = importlib.machinery.ExtensionFileLoader("_sha256", sys.argv[1])
ext = importlib.util.module_from_spec(importlib.util.spec_from_loader("_sha256", loader))
loader.exec_module(ext)
for engine in ext.engines():
    for length in (0, 18, 47, 52, 55, 56, 63, 64, 119, 120, 122):
        prefix = bytes(range(length))
        for start in (0, 999_990, 10**15 - 5, 2**53 - 600):
            want = b"".join(hashlib.sha256(prefix + str(n).encode()).digest()
                            for n in range(start, start + 600))
            assert ext.digests(engine, prefix, start, 600) == want, (engine, length, start)
print(" ".join(ext.engines()))
"""


def test_extension_builds_and_works(build: Build) -> None:
    assert build.output.returncode == 0, build.output.stderr
    assert "could not be built" not in build.output.stderr
    # setup.py asks for -Wall -Wextra: a warning in either compiler is a finding.
    assert "warning:" not in build.output.stderr, build.output.stderr
    run = subprocess.run(
        [sys.executable, "-c", CHECK_BUILT, str(build.extension())],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr
    assert "scalar-c" in run.stdout.split()


def test_a_failed_build_still_installs_and_says_how_to_get_the_fast_path(tmp_path: Path) -> None:
    build = setup_py_build_ext(tmp_path, str(tmp_path / "no-such-compiler"))
    assert build.returncode == 0, build.stderr
    assert not list(tmp_path.rglob("_sha256*.so")) and not list(tmp_path.rglob("_sha256*.pyd"))
    message = build.stderr
    assert "the compiled SHA-256 kernel could not be built" in message
    assert "hashlib kernel" in message
    for how in (
        "apt install build-essential python3-dev",
        "xcode-select --install",
        "Microsoft C++ Build Tools",
        "pip install --force-reinstall",
        "a pow-mcp wheel built for this platform",
    ):
        assert how in message
    # Never by the bare name: pow-mcp is on no package index.
    assert not re.search(r"pip install (--[a-z-]+ )*pow-mcp\b", message)
