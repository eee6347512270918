"""The job view, served two ways: as an MCP App (`ui://pow-mcp/job`, the extension
`io.modelcontextprotocol/ui`) to clients that declare it, and as browser pages
(`GET /jobs`, `GET /jobs/{job_id}`) beside `/mcp` over HTTP.

Both are single HTML files built from `ui/` into `pow_mcp/server/ui/` (`make ui`). They load nothing
from the network and fill themselves through the MCP tools, as their caller: the App through
its host, the pages through the server's own `/mcp` with the caller's token. So they see
exactly what that caller sees through MCP, and the pages themselves hold no job data.
"""

from __future__ import annotations

import re
from functools import cache
from importlib.resources import files
from typing import Any

from mcp.server.apps import APP_MIME_TYPE, EXTENSION_ID, Apps, ResourcePermissions
from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.server.mcpserver import MCPServer
from mcp_types import CLIENT_CAPABILITIES_META_KEY
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

VIEW_URI = "ui://pow-mcp/job"
# The tools whose result is about one job or a batch: a host shows the view beside them.
VIEW_TOOLS = frozenset(
    {
        "start_proof_of_work",
        "start_proof_of_work_batch",
        "query_proof_of_work_status",
        "wait_for_job",
        "wait_for_jobs",
    }
)
_PAGE_PATH = re.compile(r"^/jobs(/[^/]+)?/?$")
PAGE_HEADERS = {
    # The page's own <meta> policy allows only its inline script and style and /mcp; these
    # keep it out of other sites' frames and its address out of referrers.
    "Content-Security-Policy": "frame-ancestors 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


@cache
def asset(name: str) -> str:
    """A built file of the view (pow_mcp/server/ui/)."""
    return files("pow_mcp.server").joinpath("ui", name).read_text(encoding="utf-8")


def job_view_extension() -> Apps:
    """The MCP Apps extension with the job view as its one resource. No CSP domains are
    declared: the view needs none. Copying a proof needs the clipboard."""
    apps = Apps()
    apps.add_html_resource(
        VIEW_URI,
        asset("job-view.html"),
        name="job-view",
        title="Proof-of-work job",
        description="A live view of a pow-mcp job or batch: status, hashes, hash rate, the "
        "difficulty curve of age-based jobs, the proof, and pause/resume/cancel buttons.",
        permissions=ResourcePermissions(clipboard_write={}),
        prefers_border=True,
    )
    return apps


def declares_ui(ctx: ServerRequestContext[Any, Any]) -> bool:
    """Whether the client declared the MCP Apps extension with the App MIME type: on the
    session (2025-11-25, or this initialize request) or on the request (2026-07-28)."""
    params = ctx.params or {}
    meta = params.get("_meta")
    declared = [
        params.get("capabilities") if ctx.method == "initialize" else None,
        meta.get(CLIENT_CAPABILITIES_META_KEY) if isinstance(meta, dict) else None,
    ]
    session = ctx.session.client_capabilities if ctx.session is not None else None
    if session is not None:
        declared.append(session.model_dump(by_alias=True))
    return any(_names_app_mime(capabilities) for capabilities in declared)


def _names_app_mime(capabilities: object) -> bool:
    extensions = capabilities.get("extensions") if isinstance(capabilities, dict) else None
    settings = extensions.get(EXTENSION_ID) if isinstance(extensions, dict) else None
    mime_types = settings.get("mimeTypes") if isinstance(settings, dict) else None
    return isinstance(mime_types, list) and APP_MIME_TYPE in mime_types


async def view_middleware(
    ctx: ServerRequestContext[Any, Any], call_next: CallNext
) -> HandlerResult:
    """Links the job tools to the view for clients that declared the extension; a client that
    did not sees today's capabilities, tools and resources exactly."""
    result = await call_next(ctx)
    if not isinstance(result, dict) or ctx.method not in _SHAPED:
        return result
    _SHAPED[ctx.method](result, declares_ui(ctx))
    return result


def _link_tools(result: dict[str, Any], declared: bool) -> None:
    if not declared:
        return
    for tool in result.get("tools", []):
        if tool.get("name") in VIEW_TOOLS:
            tool["_meta"] = {**(tool.get("_meta") or {}), "ui": {"resourceUri": VIEW_URI}}


def _hide_resource(result: dict[str, Any], declared: bool) -> None:
    if not declared:
        result["resources"] = [r for r in result.get("resources", []) if r.get("uri") != VIEW_URI]


def _advertise(result: dict[str, Any], declared: bool) -> None:
    """The extension in the server's capabilities for the clients that declared it only. (The
    SDK leaves extensions out of a 2025-11-25 initialize answer; MCP Apps hosts on that
    version read them there, so they are put back.)"""
    capabilities = result.setdefault("capabilities", {})
    extensions = capabilities.setdefault("extensions", {})
    if declared:
        extensions.setdefault(EXTENSION_ID, {})
        return
    extensions.pop(EXTENSION_ID, None)
    if not extensions:
        del capabilities["extensions"]


_SHAPED = {
    "tools/list": _link_tools,
    "resources/list": _hide_resource,
    "initialize": _advertise,
    "server/discover": _advertise,
}


def is_page(method: str, path: str) -> bool:
    """A request for one of the browser pages, which carry no data and need no token."""
    return method in ("GET", "HEAD") and _PAGE_PATH.match(path) is not None


def add_pages(mcp: MCPServer) -> None:
    """`GET /jobs` and `GET /jobs/{job_id}`: one page; its script reads the address."""

    async def page(request: Request) -> Response:
        return HTMLResponse(asset("jobs-page.html"), headers=PAGE_HEADERS)

    for path in ("/jobs", "/jobs/", "/jobs/{job_id}", "/jobs/{job_id}/"):
        mcp.custom_route(path, methods=["GET", "HEAD"], include_in_schema=False)(page)
