"""Wheels: the configuration the GitHub workflow (.github/workflows/wheels.yml) builds every
platform's wheels with, through cibuildwheel ([tool.cibuildwheel] in pyproject.toml), and what
it publishes.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
WORKFLOW_FILE = ROOT / ".github" / "workflows" / "wheels.yml"
# The compiled engines a wheel may pick on the machine that tests it; never "hashlib" (nor
# "scalar-c", the portable C engine, on a CPU that has SHA or vector instructions).
FAST = {"sha-ni", "sha-ni+sse", "avx2", "armv8-sha2"}


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
