"""The README is the user's reference: the tools, statuses and variables it documents are
the server's, and it sends the reader nowhere outside the repository."""

from __future__ import annotations

import re
import tomllib
from importlib import metadata
from pathlib import Path

from pow_mcp.store import JobStatus
from tests.mcp_helpers import ROOT, connect

README = (ROOT / "README.md").read_text()
CODE = list((ROOT / "pow_mcp").rglob("*.py"))
# An environment variable the code reads: env.get("X"), env["X"], os.environ.get("X").
READS = re.compile(r"(?:env|environ)(?:\.get\(|\[)\"([A-Z][A-Z0-9_]+)\"")


def section(title: str) -> str:
    start = README.index(f"\n## {title}\n")
    end = README.find("\n## ", start + 1)
    return README[start : end if end != -1 else None]


def table_names(text: str) -> set[str]:
    return set(re.findall(r"^\| `([A-Za-z_][A-Za-z0-9_]*)` \|", text, flags=re.MULTILINE))


# Variables of the OS and of uv that `claude-config` reads to find files and commands: not
# pow-mcp settings, so not in the configuration table, but named where they matter.
NOT_OURS = {"APPDATA", "XDG_CONFIG_HOME", "UV", "UV_CACHE_DIR"}


def test_every_variable_the_code_reads_is_documented_and_no_other() -> None:
    read = {name for path in CODE for name in READS.findall(path.read_text())}
    documented = table_names(section("Configuration"))
    assert read - NOT_OURS == documented
    for name in NOT_OURS & read:
        assert f"`{name}`" in README or f"%{name}%" in README or f"${name}" in README, name


async def test_the_documented_tools_are_the_servers_tools(tmp_path: Path) -> None:
    async with connect(tmp_path) as client:
        served = {tool.name for tool in (await client.list_tools()).tools}
    assert table_names(section("The tools")) == served


def test_every_status_is_documented() -> None:
    statuses = section("The tools").split("Job statuses:", 1)[1].split("\n\n", 1)[0]
    assert {s.value for s in JobStatus} <= set(re.findall(r"`([a-z]+)`", statuses))


def test_the_docs_send_nobody_outside_the_repository() -> None:
    for path in [ROOT / "README.md", *(ROOT / "docs").rglob("*.md")]:
        text = path.read_text()
        assert "../shared" not in text and "SPEC.md" not in text, path


def test_the_version_is_declared_once_and_the_docs_follow_it() -> None:
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert metadata.version("pow-mcp") == declared  # what --version and the server report
    for path in CODE:
        assert "__version__" not in path.read_text(), path
    # The README's example file names are this version's; the changelog's newest section is
    # the coming release or this version.
    assert set(re.findall(r"pow_mcp-(\d+\.\d+\.\d+)", README)) == {declared}
    changelog = (ROOT / "CHANGELOG.md").read_text()
    newest = re.search(r"^## \[([^\]]+)\]", changelog, flags=re.MULTILINE)
    assert newest is not None and newest.group(1) in ("Unreleased", declared)
