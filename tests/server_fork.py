"""`pow-mcp` servers forked from a process that has imported the server (tests/forks.py).

A `python -m pow_mcp.server.cli` spends about 0.9 s of CPU importing the MCP SDK before it
serves, and the suite starts some 160 servers: on two cores, more than a minute of `make
test`. A forked server is still the real thing in every way a test looks at: a process of its
own (its own pid, session, worker processes and resource tracker), run by the command's
`main(argv)` with the test's arguments, environment and working directory, talking over real
pipes (stdio) or a real port (HTTP), stopped and killed by signals. Only the imports are shared.

What is not the same: how the interpreter starts (`-m`, the modules the command imports
before it knows it will serve) and the command line /proc shows (`mcp_helpers.server_pids`
asks `STARTED` instead). The files in `mcp_helpers.EXEC_FILES` run the command itself, and
`POW_TEST_SERVERS=exec` runs every server of the suite that way.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import signal
import sys
from collections.abc import AsyncIterator
from multiprocessing import resource_tracker
from multiprocessing.connection import Connection
from pathlib import Path

import anyio
from anyio.abc import AsyncResource
from mcp.client._transport import TransportStreams
from mcp.shared.message import SessionMessage
from mcp_types import jsonrpc_message_adapter

import pow_mcp.server.app  # noqa: F401  # preloaded: what a server imports to serve
from pow_mcp.server import cli
from tests.forks import FORKS, Forked

# As the SDK's stdio client waits for a server, then terminates and kills it.
EXIT_SECONDS = 2.0
KILL_SECONDS = 2.0

_MAIN = str(Path(cli.__file__).with_name("__main__.py"))


# Forked servers that may be alive, for mcp_helpers.server_pids (their command line is the
# forkserver's, so a look at /proc cannot find them by their arguments).
STARTED: list[tuple[Path, Forked]] = []


def start(
    args: list[str],
    env: dict[str, str],
    cwd: Path,
    data_dir: Path,
    *,
    stdin: int | None = None,
    stdout: int | None = None,
    stderr: int | None = None,
) -> Forked:
    """`pow-mcp ARGS` forked, its standard streams the given descriptors (None: /dev/null for
    stdin, this process's stdout and stderr, as a subprocess inherits them); the caller keeps
    and closes its own."""
    streams = [
        None if fd is None else Connection(os.dup(fd), readable=target == 0, writable=target != 0)
        for target, fd in (
            (0, stdin),
            (1, 1 if stdout is None else stdout),
            (2, 2 if stderr is None else stderr),
        )
    ]
    process = FORKS.Process(target=_serve, args=(args, env, str(cwd), *streams))
    process.start()
    for end in streams:
        if end is not None:
            end.close()
    server = Forked(process)
    STARTED[:] = [(where, s) for where, s in STARTED if s.poll() is None]
    STARTED.append((data_dir, server))
    return server


def _serve(
    args: list[str],
    env: dict[str, str],
    cwd: str,
    stdin: Connection | None,
    stdout: Connection | None,
    stderr: Connection | None,
) -> None:
    """The forked child: become `pow-mcp ARGS` as a new process would be, then run it."""
    os.setsid()  # as the SDK's stdio client starts a server: a process group of its own
    devnull = os.open(os.devnull, os.O_RDWR)
    for target, end in ((0, stdin), (1, stdout), (2, stderr)):
        if end is not None:
            os.dup2(end.fileno(), target)
            end.close()
        elif target == 0:
            os.dup2(devnull, 0)
    os.close(devnull)
    # The standard streams as PYTHONUNBUFFERED=1 (the tests' setting) makes them.
    sys.stdin = io.TextIOWrapper(io.BufferedReader(io.FileIO(0, "r", closefd=False)))
    sys.stdout = io.TextIOWrapper(io.FileIO(1, "w", closefd=False), write_through=True)
    sys.stderr = io.TextIOWrapper(
        io.FileIO(2, "w", closefd=False), errors="backslashreplace", write_through=True
    )
    os.environ.clear()
    os.environ.update(env)
    os.chdir(cwd)
    sys.argv = [_MAIN, *args]
    # The forkserver hands its children its parent's resource tracker; a server starts its own.
    tracker = resource_tracker._resource_tracker
    if tracker._fd is not None:
        os.close(tracker._fd)
        tracker._fd = None
    sys.exit(cli.main(args))


class ForkedStdio:
    """An SDK client transport (`Client(ForkedStdio(...))`) to a forked server over its
    stdin and stdout, as the SDK's stdio client talks to the process it starts: one server
    per connection, stdin closed to stop it, then SIGTERM, then SIGKILL to its group."""

    def __init__(self, args: list[str], env: dict[str, str], cwd: Path, data_dir: Path) -> None:
        self._start = (args, env, cwd, data_dir)
        self._exit = contextlib.AsyncExitStack()

    async def __aenter__(self) -> TransportStreams:
        return await self._exit.enter_async_context(_stdio(*self._start))

    async def __aexit__(self, *exc: object) -> None:
        await self._exit.aclose()


@contextlib.asynccontextmanager
async def _stdio(
    args: list[str], env: dict[str, str], cwd: Path, data_dir: Path
) -> AsyncIterator[TransportStreams]:
    to_server, from_server = os.pipe(), os.pipe()
    try:
        # stderr: this process's, as the SDK's stdio client passes its own sys.stderr on
        server = start(args, env, cwd, data_dir, stdin=to_server[0], stdout=from_server[1])
    finally:
        os.close(to_server[0])
        os.close(from_server[1])
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=1 << 24)
    await loop.connect_read_pipe(
        lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(from_server[0], "rb", 0)
    )
    out, protocol = await loop.connect_write_pipe(
        lambda: asyncio.StreamReaderProtocol(asyncio.StreamReader()),
        os.fdopen(to_server[1], "wb", 0),
    )
    writer = asyncio.StreamWriter(out, protocol, None, loop)
    incoming, read_stream = anyio.create_memory_object_stream[SessionMessage | Exception](0)
    write_stream, outgoing = anyio.create_memory_object_stream[SessionMessage](0)

    async def read_lines() -> None:
        async with incoming:
            while line := await reader.readline():
                try:
                    message: SessionMessage | Exception = SessionMessage(
                        jsonrpc_message_adapter.validate_json(line, by_name=False)
                    )
                except ValueError as exc:
                    message = exc
                try:
                    await incoming.send(message)
                except (anyio.ClosedResourceError, anyio.BrokenResourceError):
                    break
        while await reader.read(1 << 16):  # the session is gone: never block the server
            pass

    async def write_lines() -> None:
        try:
            async with outgoing:
                async for message in outgoing:
                    json = message.message.model_dump_json(by_alias=True, exclude_unset=True)
                    writer.write((json + "\n").encode())
                    await writer.drain()
        except (ConnectionError, OSError):
            await incoming.aclose()  # the server is gone: the session sees the end

    async with anyio.create_task_group() as tg:
        tg.start_soon(read_lines)
        tg.start_soon(write_lines)
        try:
            yield read_stream, write_stream
        finally:
            with anyio.CancelScope(shield=True):
                await _stop(server, writer, write_stream, read_stream)
            tg.cancel_scope.cancel()


async def _stop(server: Forked, writer: asyncio.StreamWriter, *streams: AsyncResource) -> None:
    for stream in streams:
        await stream.aclose()
    writer.close()  # end of its stdin: a stdio server stops
    if not await _exited(server, EXIT_SECONDS):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(server.pid, signal.SIGTERM)
        if not await _exited(server, KILL_SECONDS):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(server.pid, signal.SIGKILL)
            await _exited(server, KILL_SECONDS)


async def _exited(server: Forked, seconds: float) -> bool:
    with anyio.move_on_after(seconds):
        await anyio.wait_readable(server.process.sentinel)
    server.process.join(0)
    return server.process.exitcode is not None
