"""What differs between OSes at the server's edges: the signals that stop it (SIGHUP where
it exists; the handler path Windows needs, forced here by POW_PORTABLE=1) and the default
data directory when `./data/jobs` cannot be created (a desktop client's working directory
may be read-only)."""

from __future__ import annotations

import json
import logging
import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx2
import pytest

from pow_mcp.server.config import LOCAL_DATA_DIR, default_data_dir, load_config
from pow_mcp.server.signals import STOP_SIGNALS
from tests.mcp_helpers import ROOT, server_env
from tests.ports import free_port

INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {
        "protocolVersion": "2025-06-18",
        "capabilities": {},
        "clientInfo": {"name": "test", "version": "0"},
    },
}


class Stderr:
    """A server's stderr, read as it comes (no read-ahead that could block)."""

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stderr is not None
        self.fd = proc.stderr.fileno()
        self.text = ""

    def wait_for(self, needle: str, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while needle not in self.text:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self.fd], [], [], left)[0]:
                return False
            chunk = os.read(self.fd, 65536)
            if not chunk:
                return needle in self.text
            self.text += chunk.decode(errors="replace")
        return True

    def rest(self) -> str:
        while chunk := os.read(self.fd, 65536):
            self.text += chunk.decode(errors="replace")
        return self.text


def start_server(cwd: Path, env: dict[str, str], *args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "pow_mcp.server.cli", *args],
        cwd=cwd,
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def test_stop_signals_are_sighup_sigterm_sigint_sigusr1_here() -> None:
    assert set(STOP_SIGNALS) == {signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1}


# POW_PORTABLE=0: anyio's signal receiver; 1: the plain handlers Windows needs.
@pytest.mark.parametrize(
    ("transport", "signum", "portable"),
    [
        pytest.param("stdio", signal.SIGHUP, "0", id="stdio-SIGHUP-receiver"),
        pytest.param("stdio", signal.SIGHUP, "1", id="stdio-SIGHUP-handlers"),
        pytest.param("stdio", signal.SIGINT, "0", id="stdio-SIGINT-receiver"),
        pytest.param("stdio", signal.SIGINT, "1", id="stdio-SIGINT-handlers"),
        pytest.param("http", signal.SIGHUP, "1", id="http-SIGHUP-handlers"),
        pytest.param("stdio", signal.SIGUSR1, "0", id="stdio-SIGUSR1-receiver"),
    ],
)
def test_a_stop_signal_stops_the_server_gracefully(
    tmp_path: Path, transport: str, signum: signal.Signals, portable: str
) -> None:
    port = free_port()
    args = ["--data-dir", str(tmp_path), "--transport", transport, "--port", str(port)]
    proc = start_server(ROOT, server_env(tmp_path, POW_PORTABLE=portable), *args)
    err = Stderr(proc)
    try:
        # Once the server answers a request, its signal handling has long been set up.
        if transport == "http":
            assert err.wait_for("serving MCP over Streamable HTTP", 60), err.text
            assert httpx2.get(f"http://127.0.0.1:{port}/mcp", timeout=30).status_code > 0
        else:
            assert proc.stdin is not None and proc.stdout is not None
            proc.stdin.write(json.dumps(INITIALIZE).encode() + b"\n")
            proc.stdin.flush()
            assert select.select([proc.stdout], [], [], 60)[0], err.text
            assert json.loads(proc.stdout.readline())["id"] == 1
        proc.send_signal(signum)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    text = err.rest()
    assert proc.returncode == 0, text
    assert f"received {signum.name}; shutting down" in text
    assert "pow-mcp stopped" in text
    assert "Traceback" not in text


def test_a_stop_signal_as_soon_as_it_says_it_serves_is_graceful(tmp_path: Path) -> None:
    """A supervisor may stop the server the moment it says it serves: the handlers must be in
    place by then (they once came a moment later, and SIGTERM killed it outright). A second
    SIGTERM while it stops changes nothing (it once killed it: the handlers were gone)."""
    port = free_port()
    args = ["--data-dir", str(tmp_path), "--transport", "http", "--port", str(port)]
    proc = start_server(ROOT, server_env(tmp_path), *args)
    err = Stderr(proc)
    try:
        assert err.wait_for("serving MCP over Streamable HTTP", 60), err.text
        proc.send_signal(signal.SIGTERM)
        assert err.wait_for("shutting down", 30), err.text
        proc.send_signal(signal.SIGTERM)  # impatient: a second one while it stops
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    text = err.rest()
    assert proc.returncode == 0, text
    assert "pow-mcp stopped" in text


# -- the default data directory ----------------------------------------------------------------


@pytest.fixture
def user_data_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """platformdirs' per-user data directory, moved into the test's directory."""
    home = tmp_path / "xdg-data"
    monkeypatch.setenv("XDG_DATA_HOME", str(home))
    return home


def test_the_default_is_data_jobs_where_it_can_be_created(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, user_data_home: Path
) -> None:
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    assert default_data_dir() == LOCAL_DATA_DIR == Path("data/jobs")
    assert load_config({}).data_dir == Path("data/jobs")
    assert list(work.iterdir()) == []  # asking created nothing
    (work / "data" / "jobs").mkdir(parents=True)
    assert default_data_dir() == Path("data/jobs")
    assert list((work / "data" / "jobs").iterdir()) == []


def test_the_per_user_directory_when_data_jobs_cannot_be_created(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    user_data_home: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    work = tmp_path / "work"
    work.mkdir()
    (work / "data").write_text("a file where the data directory would go")
    monkeypatch.chdir(work)
    with caplog.at_level(logging.INFO, logger="pow_mcp.server.config"):
        config = load_config({})
    assert config.data_dir == user_data_home / "pow-mcp" / "jobs"
    assert str(user_data_home / "pow-mcp" / "jobs") in caplog.text
    assert str(work / "data" / "jobs") in caplog.text
    # An explicit JOBS_DATA_DIR is used as it is, usable or not (the store says if not).
    assert load_config({"JOBS_DATA_DIR": "data/jobs"}).data_dir == Path("data/jobs")


def test_a_server_started_in_an_unusable_directory_uses_the_per_user_one(tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    (work / "data").write_text("a file where the data directory would go")
    env = server_env(tmp_path, XDG_DATA_HOME=str(tmp_path / "xdg-data"))
    del env["JOBS_DATA_DIR"]
    proc = start_server(work, env)
    _, err_bytes = proc.communicate(b"", timeout=60)
    err = err_bytes.decode()
    assert proc.returncode == 0, err
    jobs = tmp_path / "xdg-data" / "pow-mcp" / "jobs"
    assert f"the default data directory is {jobs}" in err
    assert f"jobs file {jobs / 'jobs.json'}" in err
    assert (jobs / "jobs.json").exists()
    assert (work / "data").is_file()
