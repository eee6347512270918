"""Build the MCP server and run it over stdio or Streamable HTTP until told to stop."""

from __future__ import annotations

import logging
import os
import signal
import socket
from importlib.metadata import PackageNotFoundError, version

import anyio
import uvicorn
from mcp.server.mcpserver import MCPServer
from mcp.server.transport_security import TransportSecuritySettings

from server import resources
from server.config import Config, ConfigError
from server.manager import JobManager, open_manager
from server.tools import build_tools

log = logging.getLogger("pow-mcp")

INSTRUCTIONS = """\
Finds SHA-256 proofs of work in the background. Start a job with start_proof_of_work (a
generic prefix, or a Structs action with entity_id and block_start), then call wait_for_job
with the returned job_id until status is completed, and submit result.proof_of_work.nonce.
Difficulty 5 takes about a second; each step up is 16x more work, so prefer waiting in
several wait_for_job calls over one long one."""


def _version() -> str:
    try:
        return version("pow-mcp")
    except PackageNotFoundError:
        return "0+unknown"


def build_server(manager: JobManager) -> MCPServer:
    mcp: MCPServer = MCPServer(
        name="pow-mcp",
        title="Proof-of-work jobs",
        instructions=INSTRUCTIONS,
        version=_version(),
        tools=build_tools(manager),
    )
    resources.register(mcp, manager)
    return mcp


def transport_security(host: str, port: int) -> TransportSecuritySettings:
    """DNS-rebinding protection: only the server's own Host and Origin are accepted."""
    names = {host}
    if host in ("127.0.0.1", "localhost", "::1", "[::1]"):
        names |= {"127.0.0.1", "localhost", "[::1]"}
    hosts = sorted(f"{name}:{port}" for name in names)
    return TransportSecuritySettings(
        enable_dns_rebinding_protection=True,
        allowed_hosts=hosts,
        allowed_origins=[f"http://{h}" for h in hosts] + [f"https://{h}" for h in hosts],
    )


def listen(host: str, port: int) -> socket.socket:
    """Bind and listen before anything else starts: a busy port is a clear error at once."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        sock.listen(128)
    except OSError as exc:
        sock.close()
        raise ConfigError(
            f"cannot listen on {host}:{port} ({exc.strerror}); choose another --port or --host"
        ) from None
    return sock


async def _serve_http(mcp: MCPServer, config: Config, sock: socket.socket) -> None:
    app = mcp.streamable_http_app(
        transport_security=transport_security(config.host, config.port), host=config.host
    )
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    # The socket already listens, so clients may connect from this line on.
    log.info("serving MCP over Streamable HTTP at http://%s:%d/mcp", config.host, config.port)
    await server.serve(sockets=[sock])


async def _stop_on_signal(manager: JobManager, scope: anyio.CancelScope, stdio: bool) -> None:
    with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async for signum in signals:
            log.info("received %s; shutting down", signal.Signals(signum).name)
            if stdio:
                # The SDK reads stdin in a thread that no cancellation interrupts, so the
                # transport would only end when the client closes stdin. Finish the graceful
                # part here (jobs recorded, file flushed, workers joined), then leave.
                await manager.shutdown()
                await manager.store.close()
                await manager.pool.aclose()
                log.info("pow-mcp stopped")
                logging.shutdown()
                os._exit(0)
            scope.cancel()
            return


async def serve(config: Config) -> None:
    """Run until the transport ends (stdin closed) or SIGTERM/SIGINT; then stop cleanly."""
    sock = listen(config.host, config.port) if config.transport == "http" else None
    async with open_manager(config) as manager:
        storage = config.store.describe()
        if config.cluster is not None:
            storage += f"; Dask cluster {config.cluster}"
        log.info(
            "pow-mcp %s: %s; %d workers, kernel %s (%.1f M hashes/s); transport %s",
            _version(),
            storage,
            manager.pool.size,
            manager.pool.kernel_name,
            manager.pool.hashrate / 1e6,
            config.transport,
        )
        mcp = build_server(manager)
        async with anyio.create_task_group() as tg:
            tg.start_soon(_stop_on_signal, manager, tg.cancel_scope, config.transport == "stdio")
            if sock is not None:
                await _serve_http(mcp, config, sock)
            else:
                await mcp.run_stdio_async()
            tg.cancel_scope.cancel()
    log.info("pow-mcp stopped")
