"""Starting the real server process and talking to it with the SDK's own client."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

from mcp import Client, MCPError
from mcp.client.stdio import StdioServerParameters
from mcp_types import CONNECTION_CLOSED, CallToolResult

from tests import server_fork
from tests.forks import Forked
from tests.ports import free_port

ROOT = Path(__file__).resolve().parent.parent

# Servers are forked from a process that has imported the server (tests/server_fork.py),
# except in these files, whose subject is the command as an MCP client starts it, and with
# POW_TEST_SERVERS=exec: every server its own `python -m pow_mcp.server.cli`.
EXEC_FILES = {"test_server_stdio.py", "test_server_lifecycle.py"}


def _exec() -> bool:
    if os.environ.get("POW_TEST_SERVERS", "fork") == "exec":
        return True
    test = os.environ.get("PYTEST_CURRENT_TEST", "")
    return test.split("::", 1)[0].rsplit("/", 1)[-1] in EXEC_FILES


def server_env(data_dir: Path, **overrides: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("JOBS_", "POW_", "BLOCK_")) or k == "POW_PORTABLE"
    }
    env.update(
        JOBS_DATA_DIR=str(data_dir),
        POW_WORKERS="1",
        JOBS_SAVE_DEBOUNCE_SECONDS="0.05",
        PYTHONUNBUFFERED="1",
    )
    env.update(overrides)
    return env


def server_params(
    data_dir: Path, *args: str, **env: str
) -> server_fork.ForkedStdio | StdioServerParameters:
    """What `Client(...)` needs to start a server on `data_dir` and talk to it over stdio."""
    argv = ["--data-dir", str(data_dir), *args]
    if not _exec():
        return server_fork.ForkedStdio(argv, server_env(data_dir, **env), ROOT, data_dir)
    return StdioServerParameters(
        command=sys.executable,
        args=["-m", "pow_mcp.server.cli", *argv],
        env=server_env(data_dir, **env),
        cwd=ROOT,
    )


@contextlib.asynccontextmanager
async def connect(data_dir: Path, *args: str, **env: str) -> AsyncIterator[Client]:
    async with Client(server_params(data_dir, *args, **env), read_timeout_seconds=120) as client:
        yield client


@contextlib.contextmanager
def server_goes_away() -> Iterator[None]:
    """Around a client whose server the test kills: only the client's "connection closed"
    is expected; any other error (a failed assertion too) goes through."""
    try:
        yield
    except* MCPError as group:
        unexpected = group.subgroup(_not_closed)
        if unexpected is not None:
            raise unexpected from None


def _not_closed(error: BaseException) -> bool:
    if isinstance(error, BaseExceptionGroup):
        return False  # look at the leaves
    return not (isinstance(error, MCPError) and error.code == CONNECTION_CLOSED)


async def call(client: Client, tool: str, **arguments: Any) -> dict[str, Any]:
    """Call a tool that must succeed; return its structured content."""
    result = await client.call_tool(tool, arguments)
    assert not result.is_error, text_of(result)
    assert result.structured_content is not None
    return result.structured_content


async def call_error(client: Client, tool: str, **arguments: Any) -> str:
    """Call a tool that must fail as a tool error; return the error text."""
    result = await client.call_tool(tool, arguments)
    assert result.is_error, result.structured_content
    return text_of(result)


def text_of(result: CallToolResult) -> str:
    return "\n".join(getattr(block, "text", "") for block in result.content)


def server_pids(data_dir: Path) -> list[int]:
    """Pids of server processes started on `data_dir` (not their workers)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"pow_mcp.server.cli" in argv and str(data_dir).encode() in argv:
            pids.append(int(entry.name))
    forked = [s.pid for where, s in server_fork.STARTED if where == data_dir and s.poll() is None]
    return pids + forked


def kill_server(data_dir: Path) -> None:
    pids = server_pids(data_dir)
    assert len(pids) == 1, pids
    os.kill(pids[0], signal.SIGKILL)


def jobs_file(data_dir: Path) -> dict[str, Any]:
    return json.loads((data_dir / "jobs.json").read_text())


def run_cli(data_dir: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """`pow-mcp ARGS` run to its end (a start that must be refused, say), its output kept."""
    return subprocess.run(
        [sys.executable, "-m", "pow_mcp.server.cli", *args],
        cwd=ROOT,
        env=server_env(data_dir, **env),
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,  # a start that is not refused ends at once, not on ours
    )


def _start_server(
    argv: list[str], data_dir: Path, env: dict[str, str]
) -> subprocess.Popen[str] | Forked:
    """`pow-mcp ARGV` with its stderr on a pipe (`.stderr`, text) and no stdin."""
    if not _exec():
        read, write = os.pipe()
        try:
            proc = server_fork.start(argv, env, ROOT, data_dir, stderr=write)
        finally:
            os.close(write)
        proc.stderr = os.fdopen(read, "r")
        return proc
    return subprocess.Popen(
        [sys.executable, "-m", "pow_mcp.server.cli", *argv],
        cwd=ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


@contextlib.contextmanager
def http_server(
    data_dir: Path, *args: str, port: int | None = None, log: list[str] | None = None, **env: str
) -> Iterator[str]:
    """`pow-mcp --transport http` on `port` (default: a free one); yields its URL, stops it
    with SIGTERM (it must exit 0, without a traceback). Its log is read all along, so a
    chatty server never blocks; `log`, if given, receives its lines."""
    with LiveServer(data_dir, *args, port=port, log=log, **env) as server:
        host = args[args.index("--host") + 1] if "--host" in args else "127.0.0.1"
        yield f"http://{'127.0.0.1' if host == '0.0.0.0' else host}:{server.port}/mcp"


class LiveServer:
    """`pow-mcp --transport http` on a fixed port (default: a free one), which can be killed
    and started again on the same port and data directory (as a person restarts a server).
    Its log is read all along into `log`."""

    def __init__(
        self,
        data_dir: Path,
        *args: str,
        port: int | None = None,
        log: list[str] | None = None,
        **env: str,
    ) -> None:
        self.data_dir = data_dir
        self.port = port or free_port()
        self.args = args
        self.env = env
        self.proc: subprocess.Popen[str] | Forked | None = None
        self.log: list[str] = [] if log is None else log
        self._drain: threading.Thread | None = None

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        argv = ["--transport", "http", "--port", str(self.port)]
        argv += [*self.args, "--data-dir", str(self.data_dir)]
        self.proc = _start_server(argv, self.data_dir, server_env(self.data_dir, **self.env))
        assert self.proc.stderr is not None
        for line in self.proc.stderr:  # it says so once it listens
            self.log.append(line)
            if "Streamable HTTP" in line:
                break
        else:
            code = self.proc.wait()
            raise AssertionError(f"server exited with {code} before serving:\n{''.join(self.log)}")
        self._drain = threading.Thread(
            target=self.log.extend, args=(self.proc.stderr,), daemon=True
        )
        self._drain.start()

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        """SIGTERM (unless it has exited already): it must exit 0, without a traceback."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
        if self.proc is not None:
            assert self.proc.wait(timeout=30) == 0, "".join(self.log[-20:])
        if self._drain is not None:
            self._drain.join(timeout=10)  # the last lines too
        assert not any("Traceback" in line for line in self.log), "".join(self.log)

    def __enter__(self) -> LiveServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
