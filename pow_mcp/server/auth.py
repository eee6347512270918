"""Who is calling: bearer tokens over HTTP (RFC 6750), principals, and the HTTP gate.

Two kinds of token, one at a time: static ones (here), or an identity provider's OAuth
access tokens (server/oauth/, whose principals are `issuer#subject`).

A token file holds `name:token` lines; each name is a principal. A single POW_MCP_TOKEN is
the principal `default`. Jobs record their principal; a principal sees and acts on its own
jobs (and on jobs of nobody, made before principals existed) only; `admin` sees all. Over
stdio the caller is the `local` principal, who sees all: it is whoever runs the server.
Over HTTP without tokens (loopback only) the caller is nobody in particular and sees all.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import re
import socket
from collections.abc import Awaitable, Callable, MutableMapping
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

ADMIN = "admin"
DEFAULT = "default"
LOCAL = "local"
MAX_BODY = 1 << 20  # bytes of an HTTP request body
SCOPE_KEY = "pow_mcp.caller"
_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
_MIN_TOKEN = 16


class TokenError(ValueError):
    """A token setting that cannot work; the message names it."""


@dataclass(frozen=True)
class Caller:
    """The principal a request acts for, and whether it sees every job."""

    principal: str | None
    sees_all: bool

    @property
    def viewer(self) -> str | None:
        """What `JobQuery.visible_to` takes: None for a caller who sees everything."""
        return None if self.sees_all else self.principal


LOCAL_CALLER = Caller(LOCAL, sees_all=True)  # stdio
ANONYMOUS = Caller(None, sees_all=True)  # HTTP without tokens: loopback only

# Set around each MCP request (server/app.py) from the transport; read by the job manager.
CALLER: ContextVar[Caller] = ContextVar("caller", default=LOCAL_CALLER)


@dataclass(frozen=True)
class Tokens:
    """The accepted tokens and the principal each one stands for."""

    principals: tuple[tuple[bytes, str], ...]  # (token, principal)

    @classmethod
    def single(cls, token: str) -> Tokens:
        _check_token(token, "POW_MCP_TOKEN")
        return cls(((token.encode(), DEFAULT),))

    @classmethod
    def from_file(cls, path: Path) -> Tokens:
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise TokenError(f"--token-file {path}: cannot read it ({exc})") from None
        entries: list[tuple[bytes, str]] = []
        for number, line in enumerate(text.splitlines(), start=1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            name, sep, token = line.partition(":")
            where = f"--token-file {path}, line {number}"
            if not sep or not _NAME.match(name.strip()):
                raise TokenError(f"{where}: expected name:token, the name 1-64 of A-Za-z0-9_.-")
            _check_token(token.strip(), where)
            entries.append((token.strip().encode(), name.strip()))
        if not entries:
            raise TokenError(f"--token-file {path}: no name:token lines")
        if len({t for t, _ in entries}) != len(entries):
            raise TokenError(f"--token-file {path}: a token is listed twice")
        return cls(tuple(entries))

    def caller(self, presented: str) -> Caller | None:
        """The caller a presented token stands for; every token is compared, in constant
        time, so the answer's timing says nothing about which one nearly matched."""
        given = presented.encode()
        found: str | None = None
        for token, principal in self.principals:
            if hmac.compare_digest(token, given):
                found = principal
        if found is None:
            return None
        return Caller(found, sees_all=found == ADMIN)


def _check_token(token: str, where: str) -> None:
    if len(token) < _MIN_TOKEN or any(c.isspace() for c in token):
        raise TokenError(
            f"{where}: a token must be at least {_MIN_TOKEN} characters without spaces "
            "(e.g. from `python -c 'import secrets; print(secrets.token_urlsafe(32))'`)"
        )


def is_loopback(host: str) -> bool:
    if host in ("localhost", "127.0.0.1", "::1", "[::1]"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def own_names(host: str) -> set[str]:
    """The names a client may put in Host to reach a server bound to `host`."""
    names = {host}
    if is_loopback(host):
        return names | {"127.0.0.1", "localhost", "[::1]"}
    if host in ("0.0.0.0", "::", "[::]"):  # every interface: the machine's names and addresses
        names |= {"127.0.0.1", "localhost", "[::1]", socket.gethostname(), socket.getfqdn()}
        try:
            infos = socket.getaddrinfo(socket.gethostname(), None)
        except OSError:
            infos = []
        for info in infos:
            address = str(info[4][0])
            names.add(f"[{address}]" if ":" in address else address)
    return {n for n in names if n}


def _nothing(method: str, path: str) -> bool:
    return False


Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]


class Admission(Protocol):
    """The OAuth side of the gate (server/oauth/gate.py's ResourceServer)."""

    async def admit(
        self, scope: Scope, headers: dict[str, str], receive: Receive, send: Send
    ) -> tuple[Caller, Receive] | None:
        """The caller and the `receive` to go on with, or None once it answered (401, 403,
        413)."""
        ...


class HttpGate:
    """ASGI middleware in front of the MCP app: bodies over MAX_BODY get 413, requests
    without a valid bearer token (static `tokens`, or `oauth` access tokens) get 401; the
    caller goes into the request's scope, where the MCP layer picks it up.
    `public(method, path)` names the requests that carry no data (the job pages, the OAuth
    metadata) and need no token."""

    def __init__(
        self,
        app: App,
        tokens: Tokens | None,
        public: Callable[[str, str], bool] = _nothing,
        oauth: Admission | None = None,
    ) -> None:
        self.app = app
        self.tokens = tokens
        self.public = public
        self.oauth = oauth

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        length = headers.get("content-length", "")
        if length.isdigit() and int(length) > MAX_BODY:
            await reply(send, 413, "request body over 1 MiB")
            return
        caller = ANONYMOUS
        receive = _limited(receive, send)
        if self.oauth is not None and not self.public(scope["method"], scope["path"]):
            admitted = await self.oauth.admit(scope, headers, receive, send)
            if admitted is None:
                return
            caller, receive = admitted
        elif self.tokens is not None and not self.public(scope["method"], scope["path"]):
            scheme, _, presented = headers.get("authorization", "").partition(" ")
            if scheme.lower() != "bearer" or not presented.strip():
                await reply(send, 401, "a bearer token is required", 'Bearer realm="pow-mcp"')
                return
            found = self.tokens.caller(presented.strip())
            if found is None:
                challenge = 'Bearer realm="pow-mcp", error="invalid_token"'
                await reply(send, 401, "the bearer token is not valid", challenge)
                return
            caller = found
        scope.setdefault("state", {})[SCOPE_KEY] = caller
        await self.app(scope, receive, send)


def _limited(receive: Receive, send: Send) -> Receive:
    """`receive` that stops a chunked body once it passes MAX_BODY (no Content-Length)."""
    seen = 0

    async def limited() -> MutableMapping[str, Any]:
        nonlocal seen
        message = await receive()
        if message["type"] == "http.request":
            seen += len(message.get("body", b""))
            if seen > MAX_BODY:
                await reply(send, 413, "request body over 1 MiB")
                return {"type": "http.disconnect"}
        return message

    return limited


async def reply(
    send: Send, status: int, error: str | dict[str, str], challenge: str | None = None
) -> None:
    """A JSON error answer: `{"error": error}`, or `error` itself when it is a dict."""
    body = json.dumps(error if isinstance(error, dict) else {"error": error}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if challenge is not None:
        headers.append((b"www-authenticate", challenge.encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def caller_of(request: object) -> Caller:
    """The caller the HTTP gate put in a request's scope (LOCAL_CALLER without one)."""
    scope = getattr(request, "scope", None)
    if isinstance(scope, dict):
        caller = scope.get("state", {}).get(SCOPE_KEY)
        if isinstance(caller, Caller):
            return caller
    return LOCAL_CALLER
