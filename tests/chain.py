"""A local chain for age-based tests: an HTTP server answering a block height that moves."""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Chain:
    """Answers Cosmos REST blocks/latest; once armed, every request is one block later;
    while `down`, every request gets a 503."""

    def __init__(self, before: int, first: int) -> None:
        self.height, self.first = before, first
        self.armed = False
        self.down = False
        self.lock = threading.Lock()

    def next(self) -> int:
        with self.lock:
            if self.armed:
                self.height = max(self.height + 1, self.first)
            return self.height


@contextlib.contextmanager
def serving_chain() -> Iterator[tuple[Chain, str]]:
    """A chain at height 990 whose blocks start passing (from 1001) once `armed`."""
    state = Chain(before=990, first=1001)

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if state.down:
                self.send_error(503)
                return
            body = json.dumps({"block": {"header": {"height": str(state.next())}}}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/cosmos/base/tendermint/v1beta1/blocks/latest"
        yield state, url
    finally:
        server.shutdown()
