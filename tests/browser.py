"""A real headless Chromium (Debian's `chromium`, driven by Playwright through
`executable_path`; Playwright downloads nothing) and pow-mcp HTTP servers it can talk to."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from tests.mcp_helpers import ROOT

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


def screenshot(page: Any, name: str) -> Path:
    """A PNG of the page in build/screenshots (the tests' artifacts)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path
