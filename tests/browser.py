"""A real headless Chromium (Debian's `chromium`, driven by Playwright through
`executable_path`; Playwright downloads nothing) and pow-mcp HTTP servers it can talk to."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.mcp_helpers import ROOT, free_port, server_env

ARTIFACTS = ROOT / "build" / "screenshots"
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
# Without these, Chromium keeps trying to reach Google's services, which this network refuses.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def chromium_path() -> str | None:
    configured = os.environ.get("POW_CHROMIUM")
    if configured:
        return configured
    return next((path for name in CHROMIUM_NAMES if (path := shutil.which(name))), None)


def require_browser() -> tuple[Any, str]:
    """Playwright's sync API and Chromium's path; a clear skip where there is none, and a
    failure under POW_REQUIRE_BROWSER=1 (CI), where a missing browser is a broken set-up."""
    missing: str | None = None
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        missing = "Playwright for Python is not installed (it is in the dev extra)"
        sync_playwright = None
    path = chromium_path()
    if missing is None and path is None:
        missing = (
            "no Chromium found (Debian/Ubuntu: apt-get install chromium; or set POW_CHROMIUM "
            "to a Chromium or Chrome binary)"
        )
    if missing is not None:
        if os.environ.get("POW_REQUIRE_BROWSER") == "1":
            pytest.fail(f"browser tests cannot run: {missing}")
        pytest.skip(f"browser tests skipped: {missing}")
    assert path is not None
    return sync_playwright, path


class LiveServer:
    """`pow-mcp --transport http` on a fixed port, which can be killed and started again on
    the same port and data directory (as a person restarts a server)."""

    def __init__(self, data_dir: Path, *args: str, **env: str) -> None:
        self.data_dir = data_dir
        self.port = free_port()
        self.args = args
        self.env = env
        self.proc: subprocess.Popen[str] | None = None
        self.log: list[str] = []

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        command = [sys.executable, "-m", "pow_mcp.server.cli", "--transport", "http"]
        command += ["--port", str(self.port), "--data-dir", str(self.data_dir), *self.args]
        self.proc = subprocess.Popen(
            command,
            cwd=ROOT,
            env=server_env(self.data_dir, **self.env),
            stderr=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stderr is not None
        for line in self.proc.stderr:  # it says so once it listens
            self.log.append(line)
            if "Streamable HTTP" in line:
                break
        else:
            raise AssertionError(f"server exited before serving:\n{''.join(self.log)}")
        threading.Thread(target=self.log.extend, args=(self.proc.stderr,), daemon=True).start()

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            assert self.proc.wait(timeout=15) == 0, "".join(self.log[-20:])
        assert not any("Traceback" in line for line in self.log), "".join(self.log)


def live_server(data_dir: Path, *args: str, **env: str) -> Iterator[LiveServer]:
    server = LiveServer(data_dir, *args, **env)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def screenshot(page: Any, name: str) -> Path:
    """A PNG of the page in build/screenshots (the tests' artifacts)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path
