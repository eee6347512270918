"""Free TCP ports on 127.0.0.1 for the servers the tests start, safe under pytest-xdist.

A port is found free by binding port 0, then closed and handed to a server that binds it a
moment later. In that moment another test could be handed the same port: under xdist each
worker takes only ports of its own class (half the number, modulo the worker count: Linux
gives bind(0) odd ports only), so no two workers of one run can collide, and a worker never
hands out the same port twice.
"""

from __future__ import annotations

import os
import socket

_handed_out: set[int] = set()


def _worker() -> tuple[int, int]:
    """(index, count) of this xdist worker; (0, 1) outside xdist."""
    name = os.environ.get("PYTEST_XDIST_WORKER", "")
    count = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if not name.startswith("gw") or count < 2:
        return 0, 1
    return int(name[2:]) % count, count


def free_port() -> int:
    """A port nothing listens on now, this worker's own, not handed out before."""
    index, count = _worker()
    for _ in range(10_000):
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port: int = sock.getsockname()[1]
        if (port >> 1) % count == index and port not in _handed_out:
            _handed_out.add(port)
            return port
    raise RuntimeError("no free port found for this test worker")
