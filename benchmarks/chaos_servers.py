"""The chaos run's `pow-mcp --transport http` servers: their settings, and starting, killing,
freezing and stopping them."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import anyio
from chaos_store import LEASE_SECONDS, Store

ROOT = Path(__file__).resolve().parent.parent
DEBOUNCE_SECONDS = 0.25


@dataclass
class Server:
    index: int
    port: int
    env: dict[str, str]
    data_dir: Path
    log: Path
    proc: subprocess.Popen[bytes] | None = None
    frozen: bool = False

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/mcp"

    async def start(self) -> None:
        self.proc = self._spawn()
        with anyio.fail_after(120):
            while not _listening(self.port):
                if self.proc.poll() is not None:
                    raise RuntimeError(f"server {self.index} exited: see {self.log}")
                await anyio.sleep(0.1)

    def _spawn(self) -> subprocess.Popen[bytes]:
        command = [sys.executable, "-m", "pow_mcp.server.cli", "--transport", "http"]
        command += ["--port", str(self.port), "--data-dir", str(self.data_dir)]
        with open(self.log, "ab") as log:  # its own session: a freeze stops its workers too
            return subprocess.Popen(
                command, cwd=ROOT, env=self.env, stderr=log, start_new_session=True
            )

    def kill(self) -> None:
        """SIGKILL the server alone: its workers must notice and exit by themselves."""
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait()

    def freeze(self, frozen: bool) -> None:
        """SIGSTOP or SIGCONT the server and its workers, as a frozen VM."""
        assert self.proc is not None
        os.killpg(self.proc.pid, signal.SIGSTOP if frozen else signal.SIGCONT)
        self.frozen = frozen

    def stop(self) -> int:
        assert self.proc is not None
        if self.frozen:
            self.freeze(False)
        self.proc.terminate()
        try:
            return self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return -9


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def server_env(store: Store, recovery: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JOBS_", "POW_", "BLOCK_"))}
    env.update(
        POW_WORKERS="1",
        JOBS_LEASE_SECONDS=str(LEASE_SECONDS),
        JOBS_SAVE_DEBOUNCE_SECONDS=str(DEBOUNCE_SECONDS),
        JOBS_RECOVERY=recovery,
        JOBS_RETENTION_SECONDS="86400",  # the checker needs every job still there
        PYTHONUNBUFFERED="1",
    )
    if store.url is not None:
        env["JOBS_DATABASE_URL"] = store.url
    return env
