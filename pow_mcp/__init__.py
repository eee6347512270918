"""pow-mcp: an MCP server that finds SHA-256 proofs of work for AI agents.

Three parts, each importing only the ones before it: `pow_mcp.pow` (pure computation:
hashing scheme, difficulty, search kernels and worker pools), `pow_mcp.store` (job records
and their durability), `pow_mcp.server` (the MCP protocol, the job flow and the command
line). ARCHITECTURE.md maps them.
"""
