"""The MCP tools, as an LLM sees them: jobs.py (start one, query, wait, list, cancel, clean
up), control.py (pause, resume, batches, waiting for several), verify.py."""

from __future__ import annotations

from mcp.server.mcpserver.tools import Tool

from pow_mcp.server.jobs.manager import JobManager
from pow_mcp.server.tools import control, jobs, verify
from pow_mcp.server.tools.common import compact_schema


def build_tools(manager: JobManager) -> list[Tool]:
    """Every tool, with output schemas that are cheap for clients to check."""
    tools = [*jobs.tools(manager), *control.tools(manager), *verify.tools()]
    for tool in tools:
        tool.parameters = compact_schema(tool.parameters)
        schema = tool.fn_metadata.output_schema
        if schema is not None:
            tool.fn_metadata.output_schema = compact_schema(schema)
    return tools
