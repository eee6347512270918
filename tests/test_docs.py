"""The README and the documentation site in docs/ are the user's reference: the tools,
statuses and variables they document are the server's, the site builds with every link
working, and they send the reader nowhere outside the repository."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from importlib import metadata
from pathlib import Path

from pow_mcp.store import JobStatus
from tests.mcp_helpers import ROOT, connect

README = (ROOT / "README.md").read_text()
DOCS = ROOT / "docs"
CODE = list((ROOT / "pow_mcp").rglob("*.py"))
# An environment variable the code reads: env.get("X"), env["X"], os.environ.get("X").
READS = re.compile(r"(?:env|environ)(?:\.get\(|\[)\"([A-Z][A-Z0-9_]+)\"")


def page(name: str) -> str:
    return (DOCS / name).read_text()


def section(text: str, title: str) -> str:
    """From the heading `title` (any level) to the next heading of level 2 or higher."""
    match = re.search(rf"^#{{1,2}} {re.escape(title)}\n", text, flags=re.MULTILINE)
    assert match is not None, title
    end = text.find("\n## ", match.end() - 1)
    return text[match.start() : end if end != -1 else None]


def table_names(text: str) -> set[str]:
    return set(re.findall(r"^\| `([A-Za-z_][A-Za-z0-9_]*)` \|", text, flags=re.MULTILINE))


# Variables of the OS and of uv that `claude-config` reads to find files and commands: not
# pow-mcp settings, so not in the configuration table, but named where they matter.
NOT_OURS = {"APPDATA", "XDG_CONFIG_HOME", "UV", "UV_CACHE_DIR"}


def test_every_variable_the_code_reads_is_documented_and_no_other() -> None:
    read = {name for path in CODE for name in READS.findall(path.read_text())}
    documented = table_names(page("reference/configuration.md"))
    assert read - NOT_OURS == documented
    docs = README + "".join(path.read_text() for path in DOCS.rglob("*.md"))
    for name in NOT_OURS & read:
        assert f"`{name}`" in docs or f"%{name}%" in docs or f"${name}" in docs, name


async def test_the_documented_tools_are_the_servers_tools(tmp_path: Path) -> None:
    async with connect(tmp_path) as client:
        served = {tool.name for tool in (await client.list_tools()).tools}
    # The tools page's full table, and the README's short one.
    assert table_names(section(page("tools.md"), "The tools")) == served
    assert table_names(section(README, "The tools")) == served


def test_every_status_is_documented() -> None:
    statuses = section(page("tools.md"), "The tools").split("Job statuses:", 1)[1]
    statuses = statuses.split("\n\n", 1)[0]
    assert {s.value for s in JobStatus} <= set(re.findall(r"`([a-z]+)`", statuses))


def test_the_docs_send_nobody_outside_the_repository() -> None:
    for path in [ROOT / "README.md", ROOT / "mkdocs.yml", *DOCS.rglob("*.md")]:
        text = path.read_text()
        assert "../shared" not in text and "SPEC.md" not in text, path


def test_the_version_is_declared_once_and_the_docs_follow_it() -> None:
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert metadata.version("pow-mcp") == declared  # what --version and the server report
    for path in CODE:
        assert "__version__" not in path.read_text(), path
    # The example file names in the README and in Getting started are this version's; the
    # changelog's newest section is the coming release or this version.
    for text in (README, page("getting-started.md")):
        assert set(re.findall(r"pow_mcp-(\d+\.\d+\.\d+)", text)) == {declared}
    changelog = (ROOT / "CHANGELOG.md").read_text()
    newest = re.search(r"^## \[([^\]]+)\]", changelog, flags=re.MULTILINE)
    assert newest is not None and newest.group(1) in ("Unreleased", declared)


def test_the_docs_site_builds_with_every_link_working(tmp_path: Path) -> None:
    """`mkdocs build --strict` (what `make docs` runs) fails on a broken link or anchor and on
    a page left out of the nav."""
    built = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert built.returncode == 0, built.stdout + built.stderr
    assert (tmp_path / "index.html").exists()
