"""Print a pip constraints file pinning every dependency of pyproject.toml (the dev extras
included) to the lowest version its floor allows: `name>=X` becomes `name==X`.

`make test-lowest` installs with it and runs the suite, so the floors we publish are
floors that work.
"""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

FLOOR = re.compile(r"^\s*([A-Za-z0-9_.-]+)(\[[^\]]*\])?\s*(?:[^;]*?)>=\s*([0-9][^,;\s]*)")


def constraints(pyproject: Path) -> list[str]:
    project = tomllib.loads(pyproject.read_text())["project"]
    requirements = list(project["dependencies"])
    for extra in project.get("optional-dependencies", {}).values():
        requirements += extra
    lines: dict[str, str] = {}
    for requirement in requirements:
        match = FLOOR.match(requirement)
        if match is None:
            raise SystemExit(f"no >= floor in {requirement!r}: every dependency needs one")
        name, _, version = match.groups()
        marker = requirement.split(";", 1)[1].strip() if ";" in requirement else ""
        lines[name.lower()] = f"{name}=={version}" + (f"; {marker}" if marker else "")
    return sorted(lines.values())


if __name__ == "__main__":
    print("\n".join(constraints(Path(sys.argv[1] if len(sys.argv) > 1 else "pyproject.toml"))))
