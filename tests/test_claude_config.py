"""`pow-mcp claude-config`: the entry, where each client keeps its file on each OS, and the
merge (other keys and servers kept, a backup beside, a malformed file left untouched)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest

from pow_mcp.server.cli.claude import (
    DISTRIBUTION,
    Launch,
    config_path,
    console_script,
    install_source,
    launch_command,
)
from tests.cli_helpers import run_in_process
from tests.mcp_helpers import ROOT

HOME = Path("/home/ann")


@pytest.mark.parametrize(
    ("client", "system", "env", "expected"),
    [
        ("claude", "darwin", {}, "Library/Application Support/Claude/claude_desktop_config.json"),
        (
            "claude",
            "windows",
            {"APPDATA": "/x/Roaming"},
            "/x/Roaming/Claude/claude_desktop_config.json",
        ),
        ("claude", "windows", {}, "AppData/Roaming/Claude/claude_desktop_config.json"),
        ("claude", "linux", {}, ".config/Claude/claude_desktop_config.json"),
        (
            "claude",
            "linux",
            {"XDG_CONFIG_HOME": "/x/cfg"},
            "/x/cfg/Claude/claude_desktop_config.json",
        ),
        (
            "claude",
            "linux",
            {"XDG_CONFIG_HOME": "rel"},
            ".config/Claude/claude_desktop_config.json",
        ),
        ("cursor", "darwin", {}, ".cursor/mcp.json"),
        ("cursor", "windows", {"APPDATA": "/x/Roaming"}, ".cursor/mcp.json"),
        ("cursor", "linux", {"XDG_CONFIG_HOME": "/x/cfg"}, ".cursor/mcp.json"),
        ("windsurf", "linux", {}, ".codeium/windsurf/mcp_config.json"),
    ],
)
def test_where_each_client_keeps_its_file(
    client: str, system: str, env: dict[str, str], expected: str
) -> None:
    assert config_path(client, system, env, HOME) == HOME / expected  # absolute stays absolute


def claude_config(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """`pow-mcp claude-config`, in the test's process, with a home, APPDATA and
    XDG_CONFIG_HOME of its own."""
    variables = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("JOBS_", "UV"))},
        "HOME": str(tmp_path / "home"),
        "APPDATA": str(tmp_path / "appdata"),
        "XDG_CONFIG_HOME": str(tmp_path / "xdg"),
        "JOBS_DATA_DIR": str(tmp_path / "jobs"),
        **env,
    }
    return run_in_process(["claude-config", *args], variables)


def printed_entry(tmp_path: Path) -> dict[str, Any]:
    done = claude_config(tmp_path)
    assert done.returncode == 0, done.stderr
    entry: dict[str, Any] = json.loads(done.stdout)["mcpServers"]["pow"]
    return entry


def test_the_printed_entry(tmp_path: Path) -> None:
    entry = printed_entry(tmp_path)
    assert entry["command"] == str(console_script())
    assert Path(entry["command"]).is_absolute() and os.access(entry["command"], os.X_OK)
    assert entry["env"] == {"JOBS_DATA_DIR": str(tmp_path / "jobs"), "PERSIST_JOBS": "true"}
    assert "args" not in entry
    flag = claude_config(tmp_path, "--data-dir", str(tmp_path / "elsewhere"))
    assert json.loads(flag.stdout)["mcpServers"]["pow"]["env"]["JOBS_DATA_DIR"] == str(
        tmp_path / "elsewhere"
    )
    relative = claude_config(tmp_path, JOBS_DATA_DIR="rel/jobs")
    assert json.loads(relative.stdout)["mcpServers"]["pow"]["env"]["JOBS_DATA_DIR"] == str(
        ROOT / "rel" / "jobs"
    )


OS_FILES = {
    "darwin": "home/Library/Application Support/Claude/claude_desktop_config.json",
    "windows": "appdata/Claude/claude_desktop_config.json",
    "linux": "xdg/Claude/claude_desktop_config.json",
}


@pytest.mark.parametrize("system", sorted(OS_FILES))
def test_install_merges_and_keeps_a_backup(tmp_path: Path, system: str) -> None:
    path = tmp_path / OS_FILES[system]
    path.parent.mkdir(parents=True)
    old = {
        "globalShortcut": "Ctrl+Space",
        "mcpServers": {
            "files": {"command": "npx", "args": ["-y", "@modelcontextprotocol/server-filesystem"]},
            "pow": {"command": "/old/pow-mcp"},
        },
    }
    old_bytes = json.dumps(old, indent=4).encode()
    path.write_bytes(old_bytes)

    done = claude_config(tmp_path, "--install", "--os", system)
    assert done.returncode == 0, done.stderr
    assert str(path) in done.stdout
    merged = json.loads(path.read_text())
    assert merged["globalShortcut"] == "Ctrl+Space"
    assert merged["mcpServers"]["files"] == old["mcpServers"]["files"]
    assert merged["mcpServers"]["pow"] == printed_entry(tmp_path)
    (backup,) = path.parent.glob(f"{path.name}.*.bak")
    assert backup.read_bytes() == old_bytes and str(backup) in done.stdout
    assert sorted(p.name for p in path.parent.iterdir()) == sorted([path.name, backup.name])

    again = claude_config(tmp_path, "--install", "--os", system)
    assert again.returncode == 0 and "already there" in again.stdout
    assert len(list(path.parent.glob("*.bak"))) == 1  # nothing changed, nothing backed up


def test_install_creates_a_missing_file(tmp_path: Path) -> None:
    done = claude_config(tmp_path, "--install", "--os", "linux")
    assert done.returncode == 0, done.stderr
    path = tmp_path / OS_FILES["linux"]
    assert json.loads(path.read_text()) == {"mcpServers": {"pow": printed_entry(tmp_path)}}
    assert list(path.parent.iterdir()) == [path]


def test_install_for_cursor(tmp_path: Path) -> None:
    path = tmp_path / "home" / ".cursor" / "mcp.json"
    path.parent.mkdir(parents=True)
    path.write_text('{"mcpServers": {"other": {"url": "http://localhost:9000/mcp"}}}')
    done = claude_config(tmp_path, "--install", "--client", "cursor", "--os", "darwin")
    assert done.returncode == 0, done.stderr
    servers = json.loads(path.read_text())["mcpServers"]
    assert servers == {
        "other": {"url": "http://localhost:9000/mcp"},
        "pow": printed_entry(tmp_path),
    }
    assert not (tmp_path / OS_FILES["darwin"]).exists()


@pytest.mark.parametrize(
    "content",
    [
        b'{"mcpServers": {"files": ',  # cut short
        b"[1, 2]",
        b'{"mcpServers": ["pow"]}',
        b"\xff\xfe{}",
    ],
)
def test_a_malformed_file_is_refused_and_left_untouched(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / OS_FILES["linux"]
    path.parent.mkdir(parents=True)
    path.write_bytes(content)
    done = claude_config(tmp_path, "--install", "--os", "linux")
    assert done.returncode == 1
    assert str(path) in done.stderr and "nothing was changed" in done.stderr.lower()
    assert path.read_bytes() == content
    assert list(path.parent.iterdir()) == [path]  # no backup, no temporary file


def test_a_file_with_a_byte_order_mark_is_merged(tmp_path: Path) -> None:
    path = tmp_path / OS_FILES["windows"]
    path.parent.mkdir(parents=True)
    path.write_bytes(b'\xef\xbb\xbf{"mcpServers": {}}')  # as Notepad saves it
    done = claude_config(tmp_path, "--install", "--os", "windows")
    assert done.returncode == 0, done.stderr
    assert json.loads(path.read_text())["mcpServers"]["pow"] == printed_entry(tmp_path)


# -- the command a client runs -----------------------------------------------------------


@pytest.mark.parametrize(
    ("direct_url", "source"),
    [
        ({"url": "file:///src/pow-mcp", "dir_info": {"editable": True}}, "/src/pow-mcp"),
        ({"url": "file:///src/my%20copy", "dir_info": {}}, "/src/my copy"),
        (
            {"url": "file:///w/pow_mcp-0.1.0-cp311-cp311-linux_x86_64.whl", "archive_info": {}},
            "/w/pow_mcp-0.1.0-cp311-cp311-linux_x86_64.whl",
        ),
        (
            {"url": "https://example.org/pow.git", "vcs_info": {"vcs": "git", "commit_id": "abc1"}},
            "git+https://example.org/pow.git@abc1",
        ),
    ],
)
def test_install_source(direct_url: dict[str, Any], source: str) -> None:
    assert install_source(json.dumps(direct_url)) == source


def test_no_install_source_from_an_index_or_a_bad_file() -> None:
    assert install_source("") is None
    assert install_source("{not json") is None
    assert install_source('{"archive_info": {}}') is None


def test_uvx_is_written_as_uvx_from_its_source(monkeypatch: pytest.MonkeyPatch) -> None:
    """In an environment uvx made (in uv's cache), the entry runs uvx again, from where this
    copy was installed: the cached environment itself may be pruned at any time."""
    source = install_source()
    assert source is not None  # this checkout, installed from its directory
    cache = Path(sys.prefix).parent  # as if this environment lived in uv's cache
    launch = launch_command({"UV": "/nowhere/uv", "UV_CACHE_DIR": str(cache)})
    assert Path(launch.command).name == "uvx"
    assert launch.args == ("--from", source, DISTRIBUTION)

    # uv but a lasting environment (`uv run` in a project, `uv tool install`): the script.
    # An environment in the temporary directory counts as uvx --no-cache's, so keep this
    # checkout's (which may be a clone in /tmp) out of it.
    monkeypatch.setattr(tempfile, "tempdir", "/nowhere/tmp")
    lasting = launch_command({"UV": "/nowhere/uv", "UV_CACHE_DIR": "/nowhere/cache"})
    assert lasting == Launch(str(console_script()))
    assert launch_command({}) == Launch(str(console_script()))


def test_the_command_line_writes_uvx_when_run_by_uvx(tmp_path: Path) -> None:
    cache = str(Path(sys.prefix).parent)
    done = claude_config(tmp_path, UV="/nowhere/uv", UV_CACHE_DIR=cache)
    assert done.returncode == 0, done.stderr
    entry = json.loads(done.stdout)["mcpServers"]["pow"]
    assert Path(entry["command"]).name == "uvx"
    assert entry["args"] == ["--from", install_source(), "pow-mcp"]
