"""The MCP server: configuration, job manager, tools, resources, transports and CLI."""
