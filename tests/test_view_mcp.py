"""The job view as an MCP App, negotiated: the real server and the SDK client, both protocol
versions. A client that declares `io.modelcontextprotocol/ui` gets the view linked from the
job tools; one that does not sees the server exactly as before. (The view itself, rendered,
is tested in a real browser: test_view_browser.py.)"""

from __future__ import annotations

import html.parser
import re
from pathlib import Path
from typing import Any

import httpx2
import pytest
from mcp import Client
from mcp.client import advertise
from mcp_types import TextResourceContents

from pow_mcp.server.view import VIEW_TOOLS, VIEW_URI
from tests.mcp_helpers import call, http_server, server_params

UI = "io.modelcontextprotocol/ui"
APP_MIME = "text/html;profile=mcp-app"
MODES = ["legacy", "auto"]  # auto: server/discover, so 2026-07-28


def client(tmp_path: Path, mode: str, *, ui: bool) -> Client:
    extensions = [advertise(UI, {"mimeTypes": [APP_MIME]})] if ui else None
    return Client(server_params(tmp_path), mode=mode, extensions=extensions)  # type: ignore[arg-type]


async def surface(c: Client) -> dict[str, Any]:
    """What a client sees of the server: capabilities, tools (with their _meta), resources."""
    capabilities = c.session.server_capabilities
    assert capabilities is not None
    tools = (await c.list_tools()).tools
    return {
        "extensions": sorted((capabilities.extensions or {}).keys()),
        "tools": {t.name: t.model_dump(by_alias=True, exclude_none=True) for t in tools},
        "resources": sorted(r.uri for r in (await c.list_resources()).resources),
    }


@pytest.mark.parametrize("mode", MODES)
async def test_a_client_that_declares_the_extension_gets_the_view(
    tmp_path: Path, mode: str
) -> None:
    async with client(tmp_path, mode, ui=True) as c:
        seen = await surface(c)
        assert UI in seen["extensions"]
        linked = {n for n, t in seen["tools"].items() if t.get("_meta", {}).get("ui")}
        assert linked == VIEW_TOOLS
        for name in linked:
            assert seen["tools"][name]["_meta"]["ui"] == {"resourceUri": VIEW_URI}
        assert VIEW_URI in seen["resources"]

        contents = (await c.read_resource(VIEW_URI)).contents
        assert len(contents) == 1 and isinstance(contents[0], TextResourceContents)
        view = contents[0]
        assert view.mime_type == APP_MIME
        ui_meta = (view.meta or {}).get("ui", {})
        assert "csp" not in ui_meta  # no external domains: the view loads nothing
        assert "clipboardWrite" in ui_meta.get("permissions", {})
        assert_self_contained(view.text)


@pytest.mark.parametrize("mode", MODES)
async def test_a_client_without_the_extension_sees_todays_server(tmp_path: Path, mode: str) -> None:
    async with client(tmp_path, mode, ui=False) as c:
        seen = await surface(c)
        assert UI not in seen["extensions"]
        assert not any("_meta" in t and "ui" in t["_meta"] for t in seen["tools"].values())
        assert VIEW_URI not in seen["resources"]
        started = await call(c, "start_proof_of_work", prefix="view-", difficulty=1)
        assert "_meta" not in started and set(started) >= {"job_id", "status"}
    # The same tools, word for word, apart from the link.
    async with client(tmp_path, mode, ui=True) as c:
        linked = await surface(c)
    for name, tool in linked["tools"].items():
        meta = dict(tool.get("_meta", {}))
        meta.pop("ui", None)
        unlinked = {k: v for k, v in tool.items() if k != "_meta"} | (
            {"_meta": meta} if meta else {}
        )
        assert unlinked == seen["tools"][name]


class _Loads(html.parser.HTMLParser):
    """Every address the document would fetch."""

    def __init__(self) -> None:
        super().__init__()
        self.addresses: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "a":
            return  # a link is followed by a person, not loaded
        for name, value in attrs:
            if name in ("src", "href", "srcset", "data") and value:
                self.addresses.append(value)


def assert_self_contained(document: str) -> None:
    parser = _Loads()
    parser.feed(document)
    assert parser.addresses == []
    assert '<script type="module">' in document and "<style>" in document
    # No import of another file, and no address the code could fetch by itself.
    assert not re.search(r"\bimport\s*\(\s*[\"']", document)
    assert not re.search(
        r"https?://(?!www\.w3\.org/)[a-z0-9.-]+\.[a-z]{2,}/[\w./-]*\.(js|css|woff2?)", document
    )


def test_the_pages_need_no_token_and_say_nothing_of_any_job(tmp_path: Path) -> None:
    """The browser pages carry no data (they ask /mcp, with the caller's token), so they
    load without a token; the same page answers any id, so it tells nothing about which
    jobs exist. Everything else still needs the token."""
    token = "page-token-0123456789"
    with http_server(tmp_path, POW_MCP_TOKEN=token) as url:
        origin = url.removesuffix("/mcp")
        pages = [httpx2.get(f"{origin}{path}") for path in ("/jobs", "/jobs/", "/jobs/pow_1_x")]
        assert {p.status_code for p in pages} == {200}
        assert len({p.text for p in pages}) == 1
        page = pages[0]
        assert page.headers["content-type"].startswith("text/html")
        assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
        assert page.headers["x-frame-options"] == "DENY"
        assert page.headers["referrer-policy"] == "no-referrer"
        assert "connect-src 'self'" in page.text  # its own policy: /mcp and nothing else
        assert_self_contained(page.text)
        assert httpx2.post(f"{origin}/jobs").status_code == 401
        assert httpx2.get(f"{origin}/jobs/a/b").status_code == 401
        assert (
            httpx2.post(url, json={"jsonrpc": "2.0", "id": 1, "method": "ping"}).status_code == 401
        )
