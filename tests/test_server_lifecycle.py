"""Start-up and shutdown of the real server process: signals, stdin, bad settings."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import anyio
import pytest
from mcp import Client
from mcp.client.stdio import StdioServerParameters

from pow_mcp.server.config import ConfigError, load_config
from tests.mcp_helpers import (
    ROOT,
    call,
    connect,
    jobs_file,
    server_env,
    server_goes_away,
    server_pids,
)
from tests.test_pool import wait_for_exit


def children_of(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                if int(fields[1]) == pid:
                    found.append(int(entry.name))
    return found


def run_server(data_dir: Path, *args: str, **env: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "pow_mcp.server.cli", *args],
        cwd=ROOT,
        env=server_env(data_dir, **env),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


async def test_sigterm_records_running_jobs_and_leaves_no_processes(tmp_path: Path) -> None:
    with server_goes_away():
        async with connect(tmp_path, POW_WORKERS="2") as client:
            job = await call(client, "start_proof_of_work", prefix="term-", difficulty=64)
            (pid,) = server_pids(tmp_path)
            workers = children_of(pid)
            assert len(workers) >= 2
            os.kill(pid, signal.SIGTERM)
            assert wait_for_exit([pid, *workers], timeout=10) == []
            await client.list_tools()
    record = jobs_file(tmp_path)[job["job_id"]]
    assert record["status"] == "failed"
    assert record["error"] == "Job was interrupted by system shutdown"


def test_closing_stdin_stops_the_server(tmp_path: Path) -> None:
    proc = run_server(tmp_path, "--data-dir", str(tmp_path))
    _, err = proc.communicate(input="", timeout=30)
    assert proc.returncode == 0, err
    assert "pow-mcp stopped" in err


def test_start_up_line_names_file_workers_and_kernel(tmp_path: Path) -> None:
    proc = run_server(tmp_path, "--data-dir", str(tmp_path / "d"), "--workers", "1")
    _, err = proc.communicate(input="", timeout=30)
    line = next(line for line in err.splitlines() if "jobs file" in line)
    assert str((tmp_path / "d" / "jobs.json").resolve()) in line
    assert "1 workers" in line and "kernel " in line
    assert oct((tmp_path / "d").stat().st_mode & 0o777) == oct(0o700)


def test_memory_only_mode_writes_nothing(tmp_path: Path) -> None:
    proc = run_server(tmp_path, "--data-dir", str(tmp_path / "d"), PERSIST_JOBS="Off")
    _, err = proc.communicate(input="", timeout=30)
    assert proc.returncode == 0, err
    assert "memory only" in err
    assert not (tmp_path / "d").exists()


def test_unusable_data_dir_is_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    proc = run_server(tmp_path, "--data-dir", str(blocker / "jobs"))
    _, err = proc.communicate(input="", timeout=30)
    assert proc.returncode == 1
    assert str(blocker / "jobs") in err and "JOBS_DATA_DIR" in err
    assert "Traceback" not in err


@pytest.mark.parametrize(
    ("env", "name"),
    [
        ({"POW_WORKERS": "zero"}, "POW_WORKERS"),
        ({"POW_WORKERS": "0"}, "POW_WORKERS"),
        ({"PERSIST_JOBS": "maybe"}, "PERSIST_JOBS"),
        ({"BLOCK_HEIGHT_URL": "ftp://x"}, "BLOCK_HEIGHT_URL"),
        ({"BLOCK_TIME_SECONDS": "0"}, "BLOCK_TIME_SECONDS"),
        ({"TARGET_DIFFICULTY_START": "99"}, "TARGET_DIFFICULTY_START"),
        ({"JOBS_SAVE_DEBOUNCE_SECONDS": "-1"}, "JOBS_SAVE_DEBOUNCE_SECONDS"),
        ({"JOBS_RETENTION_SECONDS": "soon"}, "JOBS_RETENTION_SECONDS"),
    ],
)
def test_bad_settings_are_named(env: dict[str, str], name: str) -> None:
    with pytest.raises(ConfigError, match=name):
        load_config(env)


@pytest.mark.parametrize("value", ["false", "0", "no", "OFF", "False"])
def test_persist_jobs_false_spellings(value: str) -> None:
    assert load_config({"PERSIST_JOBS": value}).persist is False


def test_a_bad_setting_stops_the_server_with_its_name(tmp_path: Path) -> None:
    proc = run_server(tmp_path, POW_WORKERS="zero")
    _, err = proc.communicate(input="", timeout=30)
    assert proc.returncode == 2
    assert "POW_WORKERS" in err and "Traceback" not in err


async def test_claude_desktop_snippet_starts_a_working_server(tmp_path: Path) -> None:
    done = await anyio.run_process(
        [sys.executable, "-m", "pow_mcp.server.cli", "claude-config"], cwd=ROOT
    )
    entry = json.loads(done.stdout)["mcpServers"]["pow"]
    assert Path(entry["command"]).is_absolute() and os.access(entry["command"], os.X_OK)
    assert Path(entry["env"]["JOBS_DATA_DIR"]).is_absolute()
    env = {**server_env(tmp_path), **entry["env"], "JOBS_DATA_DIR": str(tmp_path)}
    params = StdioServerParameters(command=entry["command"], env=env, cwd="/")
    async with Client(params) as client:
        tools = (await client.list_tools()).tools
    assert len(tools) == 11


@pytest.mark.skipif(not hasattr(os, "openpty"), reason="needs a pseudo-terminal")
def test_started_from_a_terminal_it_says_what_it_waits_for(tmp_path: Path) -> None:
    controller, terminal = os.openpty()
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "pow_mcp.server.cli", "--data-dir", str(tmp_path)],
            cwd=ROOT,
            env=server_env(tmp_path),
            stdin=terminal,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert proc.stderr is not None
        first = proc.stderr.readline()
        proc.terminate()
        proc.wait(timeout=30)
    finally:
        os.close(controller)
        os.close(terminal)
    assert "waiting for an MCP client" in first and "inspector" in first
