"""The job resources: `pow://jobs` (the list) and `pow://jobs/{job_id}` (one record)."""

from __future__ import annotations

import json

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ResourceNotFoundError

from server.manager import JobManager, UnknownJob
from server.schemas import summary
from store import JobQuery


def register(mcp: MCPServer, manager: JobManager) -> None:
    @mcp.resource(
        "pow://jobs",
        name="jobs",
        title="Jobs",
        mime_type="application/json",
        description="All jobs, newest first (first 1000), as JSON.",
    )
    async def jobs_resource() -> str:
        records, total = await manager.find(JobQuery(limit=1000))
        jobs = [summary(r).model_dump(mode="json") for r in records]
        return json.dumps({"jobs": jobs, "total": total})

    @mcp.resource(
        "pow://jobs/{job_id}",
        name="job",
        title="A job",
        mime_type="application/json",
        description="One job's full record as JSON.",
    )
    async def job_resource(job_id: str) -> str:
        try:
            record = await manager.get(job_id)
        except UnknownJob:
            raise ResourceNotFoundError(f"no job with id {job_id!r}") from None
        return record.model_dump_json()
