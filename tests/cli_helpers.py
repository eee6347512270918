"""Running the `pow-mcp` command: in the test's own process, as `main(argv)`, or as a real
process of its own.

In the test's process, a command runs the same code with the same arguments, environment,
output streams and exit status as the console script, without the half second a new
interpreter spends importing it: most command-line assertions run this way. What only a
process shows (exit statuses as a shell sees them, a terminal, a second process beside a
server, a server's start-up) runs as a process.
"""

from __future__ import annotations

import io
import logging
import os
import subprocess
import sys
import threading
from collections.abc import Mapping, Sequence
from contextlib import redirect_stderr, redirect_stdout
from unittest import mock

from pow_mcp.server.cli import main
from pow_mcp.store import StoreSettings
from tests.mcp_helpers import run_cli, server_env

CLI = [sys.executable, "-m", "pow_mcp.server.cli"]

# A command in the test's process has its environment, stdout and stderr to itself.
_one_at_a_time = threading.Lock()


def cli_env(settings: StoreSettings, **env: str) -> dict[str, str]:
    """The environment of a command on the store of `settings` (COLUMNS wide, no terminal)."""
    return server_env(settings.data_dir, **_store_env(settings, env))


def _store_env(settings: StoreSettings, env: dict[str, str]) -> dict[str, str]:
    url = {"JOBS_DATABASE_URL": settings.database_url} if settings.database_url else {}
    return {"COLUMNS": "200", **env, **url}


def run_in_process(args: Sequence[str], env: Mapping[str, str]) -> subprocess.CompletedProcess[str]:
    """`pow-mcp ARGS` as `main(argv)` in this process, with exactly `env` as its environment;
    what it printed, its log lines on stderr as the command logs them, and its exit status."""
    out, err = io.StringIO(), io.StringIO()
    # The console script logs warnings to stderr (main's basicConfig, which the test
    # process's logging makes a no-op here).
    logs = logging.StreamHandler(err)
    logs.setLevel(logging.WARNING)
    logs.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    with (
        _one_at_a_time,
        mock.patch.dict(os.environ, env, clear=True),
        redirect_stdout(out),
        redirect_stderr(err),
    ):
        root.addHandler(logs)
        try:
            status = main(list(args))
        except SystemExit as exit:  # argparse: a usage error (2), --help or --version (0)
            status = exit.code if isinstance(exit.code, int) else 1
        finally:
            root.removeHandler(logs)
    return subprocess.CompletedProcess(list(args), status, out.getvalue(), err.getvalue())


def pow_mcp(settings: StoreSettings, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """A command on the store of `settings`, run in the test's process."""
    return run_in_process(args, cli_env(settings, **env))


def pow_mcp_process(
    settings: StoreSettings, *args: str, **env: str
) -> subprocess.CompletedProcess[str]:
    """A command on the store of `settings`, run as a process of its own."""
    return run_cli(settings.data_dir, *args, **_store_env(settings, env))
