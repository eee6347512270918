"""The signals that stop the server gracefully, on each OS.

POSIX: SIGTERM, SIGINT, SIGHUP (a closed terminal) and SIGUSR1, through anyio's signal
receiver.
Windows has neither SIGHUP nor the event loop's signal handlers (anyio's receiver raises
NotImplementedError there): SIGINT (Ctrl-C) and SIGBREAK (Ctrl-Break, a closed console
window) arrive through plain `signal.signal` handlers that hand the signal to the event
loop. SIGTERM is registered there too, though only the process itself can raise it (other
processes end a Windows process with TerminateProcess, which runs no handler; a client
that wants a graceful stop closes stdin). `POW_PORTABLE=1` selects that handler path on
Linux too, so it runs in the tests here.
"""

from __future__ import annotations

import asyncio
import math
import os
import signal
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import AbstractContextManager, contextmanager, suppress
from types import FrameType

import anyio

STOP_SIGNALS: tuple[signal.Signals, ...]
if sys.platform == "win32":
    STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGBREAK)
else:
    # SIGUSR1 too: its default would end the server without cleanup, leaving its jobs
    # `running` on disk until the next start.
    STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1)


def _portable() -> bool:
    return os.environ.get("POW_PORTABLE", "").strip().lower() in ("1", "true", "yes", "on")


def stop_signals() -> AbstractContextManager[AsyncIterator[int]]:
    """Receive the stop signals as an async iterator of signal numbers, while open.

    Call from the main thread, inside the event loop.
    """
    if sys.platform != "win32" and not _portable():
        return anyio.open_signal_receiver(*STOP_SIGNALS)
    return _handled_signals(STOP_SIGNALS)


@contextmanager
def _handled_signals(signals: tuple[signal.Signals, ...]) -> Iterator[AsyncIterator[int]]:
    """Signals through `signal.signal`, for loops without signal handlers (Windows).

    Python runs the handler in the main thread between two bytecodes, possibly in the
    middle of the event loop's own code: it only schedules the delivery, thread-safely.
    """
    loop = asyncio.get_running_loop()
    send, receive = anyio.create_memory_object_stream[int](math.inf)

    def deliver(signum: int) -> None:
        with suppress(anyio.ClosedResourceError, anyio.BrokenResourceError):
            send.send_nowait(signum)  # unless the receiver is already closed

    def handler(signum: int, frame: FrameType | None) -> None:
        loop.call_soon_threadsafe(deliver, signum)

    previous = {signum: signal.signal(signum, handler) for signum in signals}
    try:
        yield receive
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old)
        send.close()
        receive.close()
