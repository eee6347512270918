"""Build the MCP server and run it over stdio or Streamable HTTP until told to stop."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
from collections.abc import AsyncIterator, Iterator
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

import anyio
import uvicorn
from anyio.abc import TaskGroup
from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.server.mcpserver import MCPServer
from mcp.server.subscriptions import InMemorySubscriptionBus
from mcp.server.transport_security import TransportSecuritySettings

from pow_mcp.server import resources
from pow_mcp.server.auth import CALLER, LOCAL_CALLER, HttpGate, caller_of, is_loopback, own_names
from pow_mcp.server.config import Config, ConfigError
from pow_mcp.server.jobs.manager import JobManager
from pow_mcp.server.lifecycle import open_manager
from pow_mcp.server.resources import JobFeed, ResourceWire
from pow_mcp.server.signals import stop_signals
from pow_mcp.server.stdio import serve_stdio
from pow_mcp.server.tasks.board import TaskBoard
from pow_mcp.server.tasks.protocol import TasksProtocol
from pow_mcp.server.tools import build_tools
from pow_mcp.server.view import add_pages, is_page, job_view_extension, view_middleware

if TYPE_CHECKING:  # the OAuth stack (PyJWT, cryptography) is imported only where configured
    from pow_mcp.server.oauth.tokens import TokenCheck

log = logging.getLogger("pow-mcp")

HTTP_MAX_CONNECTIONS = 500  # 100 open job views hold up to 200 (a wait and a look each)
HTTP_KEEP_ALIVE_SECONDS = 5
HTTP_GRACEFUL_STOP_SECONDS = 5

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


def build_server(manager: JobManager, task_group: TaskGroup) -> MCPServer:
    """The MCP server over `manager`; its background work (job notifications) runs in
    `task_group`."""
    bus = InMemorySubscriptionBus()
    feed = JobFeed(manager, bus)
    tasks = TasksProtocol(TaskBoard(manager), task_group)
    mcp: MCPServer = MCPServer(
        name="pow-mcp",
        title="Proof-of-work jobs",
        instructions=INSTRUCTIONS,
        version=_version(),
        tools=build_tools(manager),
        extensions=[tasks, job_view_extension()],
        subscriptions=bus,
        middleware=[_with_caller, tasks.middleware, view_middleware, ResourceWire(feed)],
    )
    resources.register(mcp, manager, feed)
    add_pages(mcp)
    task_group.start_soon(feed.run, name="job notifications")
    return mcp


async def _with_caller(ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
    """The request's principal (from the HTTP gate; stdio is the local one) for the job
    manager, for the length of the request."""
    token = CALLER.set(LOCAL_CALLER if ctx.request is None else caller_of(ctx.request))
    try:
        return await call_next(ctx)
    finally:
        CALLER.reset(token)


def transport_security(
    host: str, port: int, extra: tuple[str, ...] = ()
) -> TransportSecuritySettings:
    """DNS-rebinding protection: only the server's own names (those of the address it is
    bound to) and the --allowed-host ones are accepted as Host and Origin."""
    hosts = sorted({f"{name}:{port}" for name in own_names(host)})
    hosts += [h if ":" in h.removeprefix("[").split("]")[-1] else f"{h}:{port}" for h in extra]
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


async def _http_server(
    mcp: MCPServer, config: Config, token_check: TokenCheck | None
) -> uvicorn.Server:
    security = transport_security(config.host, config.port, config.allowed_hosts)
    tokens = config.tokens()
    public = is_page
    oauth = None
    if token_check is not None:
        from pow_mcp.server.oauth.gate import ResourceServer, write_tools_of

        assert config.oauth is not None
        oauth = ResourceServer(config.oauth, token_check, write_tools_of(await mcp.list_tools()))
        oauth.add_routes(mcp)
        _accept_resource_host(security, config.oauth.resource)

        def public(method: str, path: str) -> bool:
            return is_page(method, path) or oauth.is_metadata(method, path)

    app = HttpGate(
        mcp.streamable_http_app(transport_security=security, host=config.host),
        tokens,
        public,
        oauth,
    )
    if tokens is None and oauth is None and not is_loopback(config.host):
        log.warning(
            "--insecure-no-auth: serving %s:%d WITHOUT authentication; anyone who can reach it "
            "can start, read and cancel jobs",
            config.host,
            config.port,
        )
    return _HttpServer(
        uvicorn.Config(
            app,
            log_level="warning",
            # Bounded: idle keep-alive connections and a flood of clients cannot use up the
            # process's file descriptors (those beyond the limit get 503 at once).
            limit_concurrency=HTTP_MAX_CONNECTIONS,
            timeout_keep_alive=HTTP_KEEP_ALIVE_SECONDS,
            # A request still running this long after a stop signal is cancelled.
            timeout_graceful_shutdown=HTTP_GRACEFUL_STOP_SECONDS,
        )
    )


class _HttpServer(uvicorn.Server):
    """uvicorn without its own signal handlers: the server's stop signals are handled in one
    place (`_stop_on_signal`), which also ends clients' waits.

    uvicorn's handlers would take SIGTERM from ours while it serves wherever ours are plain
    `signal.signal` handlers (Windows), so open waits would run into the graceful timeout,
    and it raises the signal again once it has stopped, which ends the process by the
    default action once ours are gone. `_stop_on_signal` calls its `handle_exit` instead.
    """

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def _accept_resource_host(security: TransportSecuritySettings, resource: str) -> None:
    """The resource URL's host as Host and its origin as Origin: it is this server's public
    name, which a reverse proxy passes on."""
    url = urlparse(resource)
    security.allowed_hosts.append(url.netloc)
    security.allowed_origins.append(f"{url.scheme}://{url.netloc}")


@contextlib.asynccontextmanager
async def _token_check(config: Config) -> AsyncIterator[TokenCheck | None]:
    """The OAuth token check, ready before anything else starts (None without an issuer)."""
    if config.transport != "http" or config.oauth is None:
        yield None
        return
    from pow_mcp.server.oauth.gate import resource_metadata
    from pow_mcp.server.oauth.tokens import open_token_check

    resource_metadata(config.oauth)  # URLs clients would read otherwise: refused before all
    async with open_token_check(config.oauth) as check:
        yield check


async def _stop_on_signal(
    signals: AsyncIterator[int], manager: JobManager, http: uvicorn.Server | None
) -> None:
    stopping = False
    async for signum in signals:
        name = signal.Signals(signum).name
        if stopping:
            log.info("received %s; already stopping", name)  # a second signal changes nothing
            continue
        stopping = True
        log.info("received %s; shutting down", name)
        if http is None:
            # The SDK reads stdin in a thread that no cancellation interrupts, so the
            # transport would only end when the client closes stdin. Finish the graceful
            # part here (jobs recorded, file flushed, workers joined), then leave.
            await manager.shutdown()
            await manager.store.close()
            await manager.pool.aclose()
            log.info("pow-mcp stopped")
            logging.shutdown()
            os._exit(0)
        # Waiting calls answer at once, so the open connections close and uvicorn returns
        # from serve without waiting out their timeouts.
        manager.begin_stop()
        # As uvicorn's own handler would: sse-starlette hooks it to end the open SSE streams.
        http.handle_exit(signum, None)


async def serve(config: Config) -> None:
    """Run until the transport ends (stdin closed) or SIGTERM/SIGINT; then stop cleanly.

    The stop signals are ours from before the store opens until the end: one sent while the
    server starts stops it once it has started, and more sent while it stops change nothing.
    """
    sock = listen(config.host, config.port) if config.transport == "http" else None
    with stop_signals() as signals:
        await _serve(config, sock, signals)
    log.info("pow-mcp stopped")


async def _serve(config: Config, sock: socket.socket | None, signals: AsyncIterator[int]) -> None:
    async with _token_check(config) as token_check, open_manager(config) as manager:
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
        async with anyio.create_task_group() as tg:
            mcp = build_server(manager, tg)
            http = await _http_server(mcp, config, token_check) if sock is not None else None
            tg.start_soon(_stop_on_signal, signals, manager, http)
            if http is not None:
                assert sock is not None
                # The socket already listens, so clients may connect from this line on.
                host, port = sock.getsockname()[:2]
                log.info("serving MCP over Streamable HTTP at http://%s:%d/mcp", host, port)
                log.info("job pages at http://%s:%d/jobs", host, port)
                await http.serve(sockets=[sock])
            else:
                await serve_stdio(mcp)
            tg.cancel_scope.cancel()
