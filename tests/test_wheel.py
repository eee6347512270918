"""Wheels: `python -m build` makes an sdist and a wheel that carries the compiled kernel; the
wheel installs into a fresh venv on a machine with no C compiler and hashes with a compiled
engine; an install from the sdist with no compiler falls back to hashlib and says how to get the
fast kernel. And the configuration the GitHub workflow builds every platform's wheels with.

The tests that build are marked `wheel`: the build compiles the kernel, most of a minute on two
cores, and a fresh venv gets every dependency, so they take 1-3 minutes in all. `make test`
leaves them out (`-m 'not wheel'` in pyproject.toml's addopts); `make test-wheel` runs them, and
.ci/run runs that. The checks of the configuration are quick and run in `make test`.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import tarfile
import tomllib
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from tests.test_native_kernel import cpu_flags

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
VERSION = PYPROJECT["project"]["version"]
WORKFLOW_FILE = ROOT / ".github" / "workflows" / "wheels.yml"
# The compiled engines a wheel may pick on the machine that tests it; never "hashlib" (nor
# "scalar-c", the portable C engine, on a CPU that has SHA or vector instructions).
FAST = {"sha-ni", "sha-ni+sse", "avx2", "armv8-sha2"}
COMPILERS = ("cc", "gcc", "clang", "c99", "x86_64-linux-gnu-gcc")


def expected_engines() -> set[str]:
    """What "auto" picks on this machine, from the CPU's flags (Linux x86-64: /proc/cpuinfo)."""
    flags = cpu_flags()
    if "sha_ni" in flags:
        return {"sha-ni", "sha-ni+sse"}
    if "avx2" in flags:
        return {"avx2"}
    return FAST


# --- what cibuildwheel builds, and the workflow that runs it (quick: in `make test`) --------


def workflow() -> dict[object, object]:
    loaded = yaml.safe_load(WORKFLOW_FILE.read_text())
    assert isinstance(loaded, dict)
    return loaded


def build_identifiers(platform: str, arch: str | None = None) -> list[str]:
    cibuildwheel = Path(sys.executable).with_name("cibuildwheel")
    env = {k: v for k, v in os.environ.items() if not k.startswith("CIBW_")}
    if arch:
        env["CIBW_ARCHS"] = arch
    done = subprocess.run(
        [cibuildwheel, "--print-build-identifiers", "--platform", platform],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.split()


def test_each_runner_of_the_workflow_builds_its_wheels_and_together_they_build_all() -> None:
    wanted = {
        f"cp{minor}-{platform}"
        for minor in ("311", "312", "313")
        for platform in (
            "manylinux_x86_64",
            "manylinux_aarch64",
            "macosx_x86_64",
            "macosx_arm64",
            "win_amd64",
        )
    }
    built: list[str] = []
    jobs = workflow()["jobs"]
    assert isinstance(jobs, dict)
    for entry in jobs["wheels"]["strategy"]["matrix"]["include"]:
        identifiers = build_identifiers(entry["os"], entry["arch"])
        assert len(identifiers) == 3, (entry, identifiers)  # CPython 3.11, 3.12, 3.13
        built += identifiers
    assert sorted(built) == sorted(wanted)


def test_the_workflow_publishes_a_version_tag_only_by_trusted_publishing() -> None:
    flow = workflow()
    triggers = flow.get("on", flow.get(True))  # YAML 1.1 reads a bare `on` as true
    assert isinstance(triggers, dict)
    assert triggers["push"]["tags"] == ["v*"]
    assert flow["permissions"] == {"contents": "read"}
    jobs = flow["jobs"]
    assert isinstance(jobs, dict)
    publish = jobs["publish"]
    assert publish["needs"] == ["wheels", "sdist"]
    assert publish["if"] == "github.event_name == 'push' && startsWith(github.ref, 'refs/tags/v')"
    assert publish["permissions"] == {"id-token": "write"}
    assert publish["environment"]["name"] == "pypi"
    [upload] = [s for s in publish["steps"] if "gh-action-pypi-publish" in s.get("uses", "")]
    assert upload["uses"] == "pypa/gh-action-pypi-publish@release/v1"
    assert "with" not in upload  # no password, no API token: the OIDC token is the credential


def cibuildwheel_test_code() -> str:
    """The Python code of [tool.cibuildwheel] test-command (`python -c "..."`)."""
    command = shlex.split(PYPROJECT["tool"]["cibuildwheel"]["test-command"])
    assert command[:2] == ["python", "-c"] and len(command) == 3, command
    return command[2]


def test_the_wheels_own_test_passes_a_compiled_kernel_and_fails_hashlib(tmp_path: Path) -> None:
    code = cibuildwheel_test_code()
    env = {k: v for k, v in os.environ.items() if k != "POW_KERNEL"}
    python_c = [sys.executable, "-c"]
    passed = subprocess.run(
        [*python_c, code], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert passed.returncode == 0, passed.stderr
    assert passed.stdout.split(": ")[1].strip() in FAST | {"scalar-c"}
    # A wheel built without the kernel: its import fails, as in an install with no _sha256.
    hide = "import sys; sys.modules['pow_mcp.pow.kernels._sha256'] = None\n"
    failed = subprocess.run(
        [*python_c, hide + code], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert failed.returncode == 1
    assert "pow-mcp kernel: hashlib" in failed.stdout
    assert "the wheel has no compiled kernel" in failed.stderr


# --- building and installing (slow: `make test-wheel`) --------------------------------------


def no_compiler(tmp: Path, venv: Path) -> dict[str, str]:
    """The environment of a user with no C compiler: PATH is the venv's scripts and an empty
    directory, all pip needs to install wheels (and to run setup.py, whose compiler it cannot
    find). Nothing names a compiler either (CC and friends)."""
    empty = tmp / "bin-nothing"
    empty.mkdir(exist_ok=True)
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in {"CC", "CXX", "LDSHARED", "CFLAGS", "PYTHONPATH", "VIRTUAL_ENV", "POW_KERNEL"}
    }
    scripts = venv / ("Scripts" if os.name == "nt" else "bin")
    env["PATH"] = os.pathsep.join([str(scripts), str(empty)])
    return env


def run(
    args: list[str | Path], env: dict[str, str] | None, cwd: Path, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [str(a) for a in args],
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,  # the server stops at the end of its stdin
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert done.returncode == 0, f"{args}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done


@dataclass(frozen=True)
class Built:
    sdist: Path
    wheel: Path
    venv: Path  # the wheel installed, with its dependencies, with no compiler on PATH
    env: dict[str, str]  # that user's environment
    home: Path  # a directory outside the checkout, to run from

    def bin(self, name: str) -> Path:
        return Path(self.env["PATH"].split(os.pathsep)[0]) / name


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    """The sdist and the wheel `python -m build` makes of the checkout, built once, and the
    wheel installed into a fresh venv by a user with no C compiler.

    The build compiles on one core; meanwhile the venv is made and gets the project's
    dependencies (those of pyproject.toml, the wheel's own), so that installing the wheel finds
    them there: the same venv as one `pip install` of the wheel makes, with the two overlapping
    (25-30 s sooner here)."""
    out = tmp_path_factory.mktemp("dist")
    log = out.parent / "build.log"  # a file, not a pipe: nobody reads a pipe until the end
    with log.open("w") as sink:
        build = subprocess.Popen(
            [sys.executable, "-m", "build", "--outdir", str(out), str(ROOT)],
            stdin=subprocess.DEVNULL,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    try:
        home = tmp_path_factory.mktemp("user")
        venv = home / "venv"
        env = no_compiler(home, venv)
        run([sys.executable, "-m", "venv", venv], env, home)
        python = Path(env["PATH"].split(os.pathsep)[0]) / "python"
        where = run(
            [
                python,
                "-c",
                "import shlex, shutil, sysconfig; "
                "cc = shlex.split(sysconfig.get_config_var('CC') or 'cc')[0]; "
                f"print([shutil.which(c) for c in (cc, *{COMPILERS!r})])",
            ],
            env,
            home,
        )
        assert where.stdout.strip() == repr([None] * (len(COMPILERS) + 1)), where.stdout
        pip = [python, "-m", "pip", "install", "--quiet"]
        run([*pip, *PYPROJECT["project"]["dependencies"]], env, home, timeout=600)
        build.wait(timeout=900)
    finally:
        build.kill()  # only if still running: after a failure above
        build.wait()
    output = log.read_text()
    assert build.returncode == 0, output[-5000:]
    # Built with a compiler: a build without the kernel would have said so, and passed.
    assert "could not be built" not in output
    [sdist] = out.glob("*.tar.gz")
    [wheel] = out.glob("*.whl")
    run([*pip, wheel], env, home, timeout=600)
    return Built(sdist, wheel, venv, env, home)


def members(built: Built) -> tuple[set[str], set[str]]:
    with zipfile.ZipFile(built.wheel) as wheel:
        in_wheel = set(wheel.namelist())
    with tarfile.open(built.sdist) as sdist:
        top = f"pow_mcp-{VERSION}/"
        in_sdist = {name.removeprefix(top) for name in sdist.getnames()}
    return in_wheel, in_sdist


@pytest.mark.wheel
def test_the_sdist_has_the_sources_and_the_wheel_the_compiled_kernel(built: Built) -> None:
    assert built.sdist.name == f"pow_mcp-{VERSION}.tar.gz"
    # A platform wheel for this CPython (cp311-cp311-linux_x86_64), not a pure one.
    tag = f"cp{sys.version_info.major}{sys.version_info.minor}"
    assert re.fullmatch(rf"pow_mcp-{VERSION}-{tag}-{tag}-\w+\.whl", built.wheel.name)
    in_wheel, in_sdist = members(built)
    kernel_dir = "pow_mcp/pow/kernels/"
    [compiled] = [n for n in in_wheel if re.fullmatch(rf"{kernel_dir}_sha256\.[^/]+\.(so|pyd)", n)]
    assert f"{kernel_dir}_sha256.pyi" in in_wheel
    assert not [n for n in in_wheel if n.endswith((".c", ".h"))]  # the sources: sdist only
    # Every module of the checkout, and the data the package reads.
    tracked = subprocess.run(
        ["git", "ls-files", "pow_mcp"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    assert {p for p in tracked if p.endswith(".py")} == {p for p in in_wheel if p.endswith(".py")}
    assert "pow_mcp/store/sql/migrations/script.py.mako" in in_wheel
    assert any(re.fullmatch(r"pow_mcp/server/ui/[^/]+\.html", n) for n in in_wheel)
    assert f"pow_mcp-{VERSION}.dist-info/entry_points.txt" in in_wheel
    # The sdist: what builds the wheel (the C sources, setup.py), the docs; nothing compiled.
    for needed in (
        "setup.py",
        "pyproject.toml",
        "README.md",
        "LICENSE",
        "ARCHITECTURE.md",
        "mkdocs.yml",  # the documentation site's sources
        "docs/index.md",
        "docs/images/job-view-app.png",
        f"{kernel_dir}c/sha256_search.c",
        f"{kernel_dir}c/sha256_search.h",
        f"{kernel_dir}c/sha256_lanes.h",
        f"{kernel_dir}c/module.c",
        f"{kernel_dir}_sha256.pyi",
    ):
        assert needed in in_sdist, needed
    assert not [n for n in in_sdist if n.endswith((".so", ".pyd", ".o"))]
    assert compiled.rsplit("/", 1)[1] not in {n.rsplit("/", 1)[-1] for n in in_sdist}


@pytest.mark.wheel
def test_the_wheel_installs_with_no_compiler_and_hashes_with_a_compiled_engine(
    built: Built,
) -> None:
    version = run([built.bin("pow-mcp"), "--version"], built.env, built.home)
    assert version.stdout.strip() == f"pow-mcp {VERSION}"
    # The installed package's kernel, not the checkout's.
    where = run(
        [
            built.bin("python"),
            "-c",
            "from pow_mcp.pow.kernels import native; print(native._ext.__file__)",
        ],
        built.env,
        built.home,
    )
    assert Path(where.stdout.strip()).is_relative_to(built.venv)
    bench = run(
        [built.bin("pow-mcp"), "bench", "--seconds", "0.05", "--rounds", "1", "--workers", "1"],
        built.env,
        built.home,
    )
    [kernel_line] = [line for line in bench.stdout.splitlines() if line.startswith("kernel: ")]
    kernel = kernel_line.removeprefix("kernel: ").split(" ", 1)[0]
    assert kernel != "hashlib", bench.stdout
    assert kernel in expected_engines(), kernel_line
    assert "compiled engines this CPU runs" in kernel_line
    assert "slow fallback" not in bench.stdout + bench.stderr


@pytest.mark.wheel
def test_the_sdist_with_no_compiler_installs_hashlib_and_says_how_to_get_the_fast_kernel(
    built: Built,
) -> None:
    # pow-mcp alone, from the sdist, into a directory of its own (PYTHONPATH puts it before the
    # venv's copy; the venv gives the dependencies). pip shows the build's output only with -v.
    target = built.home / "from-sdist"
    pip = [built.bin("python"), "-m", "pip", "install", "-v", "--no-cache-dir", "--no-deps"]
    install = run([*pip, "--target", target, built.sdist], built.env, built.home)
    said = install.stdout + install.stderr
    assert "pow-mcp: the compiled SHA-256 kernel could not be built" in said
    assert "a pow-mcp wheel built for this platform" in said
    kernels = target / "pow_mcp" / "pow" / "kernels"
    assert [p.name for p in kernels.glob("_sha256.*")] == ["_sha256.pyi"]
    env = {**built.env, "PYTHONPATH": str(target)}

    bench = run(
        [built.bin("pow-mcp"), "bench", "--seconds", "0.05", "--rounds", "1", "--workers", "1"],
        env,
        built.home,
    )
    lines = bench.stdout.splitlines()
    assert any(line.startswith("kernel: hashlib, the slow fallback: ") for line in lines)
    assert lines[-1].startswith("kernel: hashlib, the slow fallback. To get the compiled kernel")
    # And the server, at every start (here: started, and stopped by the end of its stdin).
    data = built.home / "data"
    served = run([built.bin("pow-mcp"), "--workers", "1", "--data-dir", data], env, data.parent)
    warning = [line for line in served.stderr.splitlines() if "WARNING" in line]
    assert any("hashing uses the pure-Python hashlib kernel" in line for line in warning), (
        served.stderr
    )
    assert any("a pow-mcp wheel built for this platform" in line for line in warning)
    assert "kernel hashlib" in served.stderr  # the start-up line
    assert shutil.which("gcc", path=env["PATH"]) is None
