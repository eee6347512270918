"""The HTTP gate's OAuth side: the protected-resource metadata (RFC 9728) that tells clients
where to get tokens, and each request's check: a valid access token (oauth/tokens.py), and
the scope its JSON-RPC call needs (pow:read to read jobs, pow:write to start or change
them), refused with 401 or 403 and a `WWW-Authenticate` challenge as RFC 6750 says.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, MutableMapping
from typing import Any
from urllib.parse import urlparse

from mcp.server.auth.handlers.metadata import ProtectedResourceMetadataHandler
from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser
from mcp.server.auth.provider import AccessToken
from mcp.server.auth.routes import build_resource_metadata_url
from mcp.server.mcpserver import MCPServer
from mcp.shared.auth import ProtectedResourceMetadata
from pydantic import ValidationError
from starlette.authentication import AuthCredentials

from pow_mcp.server.auth import Caller, Receive, Scope, Send, reply
from pow_mcp.server.config import ConfigError, OAuthSettings
from pow_mcp.server.oauth.tokens import Rejected, TokenCheck, principal_of

READ = "pow:read"
WRITE = "pow:write"

# Methods that touch no job: any valid token may call them.
PLUMBING = frozenset(
    {
        "initialize",
        "ping",
        "server/discover",
        "tools/list",
        "resources/list",
        "resources/templates/list",
        "prompts/list",
        "logging/setLevel",
    }
)
READS = frozenset(
    {
        "resources/read",
        "resources/subscribe",
        "resources/unsubscribe",
        "subscriptions/listen",
        "completion/complete",  # completes job ids
        "tasks/get",
        "tasks/list",
        "tasks/result",
    }
)


def caller_of_token(token: AccessToken, admin_scope: str) -> Caller:
    issuer = str((token.claims or {}).get("iss", ""))
    return Caller(principal_of(issuer, token.subject or ""), sees_all=admin_scope in token.scopes)


def resource_metadata(settings: OAuthSettings) -> ProtectedResourceMetadata:
    """The protected-resource metadata (RFC 9728) clients read to find the issuer. Its URLs
    must be written as configured, since clients compare them as strings: ConfigError
    names the canonical form (lower-case host, no default port) where they differ."""
    try:
        metadata = ProtectedResourceMetadata.model_validate(
            {
                "resource": settings.resource,
                "authorization_servers": [settings.issuer],
                "scopes_supported": [READ, WRITE],
                "bearer_methods_supported": ["header"],
                "resource_name": "pow-mcp",
            }
        )
    except ValidationError:
        raise ConfigError(
            f"POW_MCP_OAUTH_ISSUER={settings.issuer!r} or POW_MCP_RESOURCE_URL="
            f"{settings.resource!r} is not an http(s) URL"
        ) from None
    for name, value, written in (
        ("POW_MCP_OAUTH_ISSUER", settings.issuer, str(metadata.authorization_servers[0])),
        ("POW_MCP_RESOURCE_URL", settings.resource, str(metadata.resource)),
    ):
        if written != value:
            raise ConfigError(
                f"{name}={value!r}: write it as {written!r}, the form clients compare it in"
            )
    return metadata


class ResourceServer:
    """The HTTP side: the protected-resource metadata, and the gate's check of each request's
    token and of the scope its JSON-RPC call needs (401 and 403 as RFC 6750 says)."""

    def __init__(
        self, settings: OAuthSettings, tokens: TokenCheck, write_tools: frozenset[str]
    ) -> None:
        self.settings, self.tokens, self.write_tools = settings, tokens, write_tools
        self.metadata = resource_metadata(settings)
        self.metadata_url = str(build_resource_metadata_url(self.metadata.resource))
        self.metadata_paths = {"/.well-known/oauth-protected-resource"}
        self.metadata_paths.add(urlparse(self.metadata_url).path)

    def is_metadata(self, method: str, path: str) -> bool:
        return method in ("GET", "HEAD") and path in self.metadata_paths

    def add_routes(self, mcp: MCPServer) -> None:
        """The metadata (RFC 9728) where the spec puts it (`/.well-known/oauth-protected-
        resource` + the resource's path) and at the root, which clients also try."""
        handler = ProtectedResourceMetadataHandler(self.metadata).handle
        for path in sorted(self.metadata_paths):
            mcp.custom_route(path, methods=["GET", "HEAD"], include_in_schema=False)(handler)

    async def admit(
        self, scope: Scope, headers: dict[str, str], receive: Receive, send: Send
    ) -> tuple[Caller, Receive] | None:
        """The caller and the `receive` to go on with, or None once refused (401, 403, 413).
        Puts the token in the scope the way the SDK's auth middleware does, so the SDK binds
        each MCP session to the identity that opened it."""
        scheme, _, presented = headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not presented.strip():
            await self._refuse(send, 401, None, "a bearer token is required")
            return None
        try:
            token = await self.tokens.check(presented.strip())
        except Rejected as exc:
            await self._refuse(send, 401, "invalid_token", str(exc))
            return None
        if scope["method"] == "POST":
            buffered = await _buffer(receive)
            if buffered is None:
                return None  # over MAX_BODY (answered 413) or the client went away
            body, receive = buffered
            needed = scope_needed(body, self.write_tools)
            if needed is not None and needed not in self._granted(token):
                what = "starting or changing jobs" if needed == WRITE else "reading jobs"
                description = f"{what} needs the {needed} scope, which this token lacks"
                await self._refuse(send, 403, "insufficient_scope", description, needed)
                return None
        scope["user"] = AuthenticatedUser(token)
        scope["auth"] = AuthCredentials(token.scopes)
        return caller_of_token(token, self.settings.admin_scope), receive

    def _granted(self, token: AccessToken) -> set[str]:
        granted = set(token.scopes)
        if self.settings.admin_scope in granted:
            granted |= {READ, WRITE}  # an administrator may do anything, to anyone's jobs
        return granted

    async def _refuse(
        self,
        send: Send,
        status: int,
        error: str | None,
        description: str,
        needed: str = f"{READ} {WRITE}",
    ) -> None:
        # RFC 6750 3: no error code when no token was presented; the scope the client should
        # ask for, and where the metadata is (RFC 9728 5.1), always.
        parts = [f'error="{error}"', f'error_description="{description}"'] if error else []
        parts += [f'scope="{needed}"', f'resource_metadata="{self.metadata_url}"']
        body = {"error": error or "invalid_token", "error_description": description}
        await reply(send, status, body, "Bearer " + ", ".join(parts))


async def _buffer(receive: Receive) -> tuple[bytes, Receive] | None:
    """Read a whole request body (the gate's `receive` stops it past MAX_BODY); then the
    `receive` that hands it on once, as it came, and the rest after it."""
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return None
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    body = b"".join(chunks)
    handed = False

    async def replay() -> MutableMapping[str, Any]:
        nonlocal handed
        if handed:
            return await receive()
        handed = True
        return {"type": "http.request", "body": body, "more_body": False}

    return body, replay


def scope_needed(body: bytes, write_tools: frozenset[str]) -> str | None:
    """The scope a JSON-RPC request body needs: pow:write for tools and methods that start or
    change jobs, pow:read for those that read them, None for plumbing (initialize, lists,
    notifications, responses). A body that is no JSON is left to the server to refuse."""
    try:
        parsed = json.loads(body)
    except (ValueError, RecursionError):  # RecursionError: nesting deeper than Python's stack
        return None
    messages = parsed if isinstance(parsed, list) else [parsed]
    needed = {_message_scope(m, write_tools) for m in messages if isinstance(m, dict)}
    return WRITE if WRITE in needed else READ if READ in needed else None


def _message_scope(message: dict[str, Any], write_tools: frozenset[str]) -> str | None:
    method = message.get("method")
    if not isinstance(method, str) or method in PLUMBING or method.startswith("notifications/"):
        return None
    if method == "tools/call":
        params = message.get("params")
        name = params.get("name") if isinstance(params, dict) else None
        return WRITE if name in write_tools else READ  # a tool that does not exist does nothing
    return READ if method in READS else WRITE  # a method added later is a write until listed


def write_tools_of(tools: Iterable[Any]) -> frozenset[str]:
    """The tools that start or change jobs: those not annotated read-only."""
    return frozenset(
        tool.name
        for tool in tools
        if not (tool.annotations is not None and tool.annotations.read_only_hint)
    )
