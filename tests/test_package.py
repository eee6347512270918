"""The installed package: one top-level import name, `pow_mcp`, so that nothing named `pow`,
`store` or `server` lands in a user's environment; and the layering its three parts keep."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

# Run from a directory that is not the checkout, so only what is installed can be imported.
IMPORT_EVERYTHING = """
import importlib, pkgutil, sys
names = []
for top in ("pow_mcp.pow", "pow_mcp.store", "pow_mcp.server"):
    package = importlib.import_module(top)
    names += [m.name for m in pkgutil.walk_packages(package.__path__, top + ".")]
for name in names:
    # Not alembic's scripts (alembic runs them) nor __main__ (it would start the server).
    if ".migrations." not in name and not name.endswith("__main__"):
        importlib.import_module(name)
print(len(names))
print(sorted({m.split(".")[0] for m in sys.modules} & {"pow", "store", "server"}))
print([importlib.util.find_spec(n) for n in ("pow", "store", "server")])
"""


def test_everything_imports_under_pow_mcp_and_nothing_at_the_top(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-c", IMPORT_EVERYTHING],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    count, top_level, specs = done.stdout.splitlines()
    assert int(count) > 50
    assert top_level == "[]"
    assert specs == "[None, None, None]"


def test_the_console_script_names_the_package(tmp_path: Path) -> None:
    script = Path(sys.executable).with_name("pow-mcp")
    done = subprocess.run(
        [script, "--version"], cwd=tmp_path, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("pow-mcp ")
