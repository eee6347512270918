"""MCP over stdio, answering every request line, even one the SDK cannot read.

The SDK's stdio reader turns a line it cannot parse (a lone UTF-16 surrogate such as
"\\ud800" in a string, which strict JSON parsers refuse) into an exception on its stream,
and its dispatcher drops that: the client would wait for an answer for ever. Here such a
line gets a JSON-RPC parse error with the request's id (read back leniently), so the
client sees what is wrong at once.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import anyio
from anyio.abc import ObjectReceiveStream, ObjectSendStream
from mcp.server.mcpserver import MCPServer
from mcp.server.stdio import stdio_server
from mcp.shared.message import SessionMessage
from mcp_types import ErrorData, JSONRPCError
from pydantic import ValidationError

log = logging.getLogger(__name__)

PARSE_ERROR = -32700


async def serve_stdio(mcp: MCPServer) -> None:
    """`mcp.run_stdio_async()`, with unreadable request lines answered."""
    lowlevel = mcp._lowlevel_server  # the SDK's own run_stdio_async does the same
    async with stdio_server() as (read_stream, write_stream):
        send, receive = anyio.create_memory_object_stream[SessionMessage | Exception](0)
        async with anyio.create_task_group() as tg:
            tg.start_soon(_answer_unreadable, read_stream, send, write_stream)
            await lowlevel.run(receive, write_stream, lowlevel.create_initialization_options())
            tg.cancel_scope.cancel()


async def _answer_unreadable(
    incoming: ObjectReceiveStream[SessionMessage | Exception],
    onward: ObjectSendStream[SessionMessage | Exception],
    replies: ObjectSendStream[SessionMessage],
) -> None:
    async with onward:
        async for item in incoming:
            reply = _parse_error(item) if isinstance(item, Exception) else None
            if reply is None:
                await onward.send(item)
            else:
                await replies.send(SessionMessage(reply))


def _parse_error(exc: Exception) -> JSONRPCError | None:
    """A parse error answering the line behind `exc`, if that line was a request."""
    if not isinstance(exc, ValidationError):
        return None
    line = next((e.get("input") for e in exc.errors() if isinstance(e.get("input"), str)), None)
    if line is None:
        return None
    try:
        request: Any = json.loads(line)  # Python's parser takes lone surrogates
    except ValueError:
        return None
    request_id = request.get("id") if isinstance(request, dict) else None
    if isinstance(request_id, bool) or not isinstance(request_id, int | str):
        return None  # a notification, or no id to answer: nothing waits for a reply
    reason = exc.errors()[0].get("msg", "invalid JSON-RPC message")
    log.warning("request %r could not be read: %s", request_id, reason)
    message = (
        f"the request could not be read ({reason}); strings must be valid Unicode "
        "(a lone UTF-16 surrogate such as \\ud800 is not)"
    )
    return JSONRPCError(
        jsonrpc="2.0", id=request_id, error=ErrorData(code=PARSE_ERROR, message=message)
    )
