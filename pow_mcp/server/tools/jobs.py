"""Starting one job, and the tools for any job: query, wait, list, cancel, clean up."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, Literal

from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ToolError
from mcp.server.mcpserver.tools import Tool
from mcp_types import CallToolResult
from pydantic import Field

from pow_mcp.pow.difficulty import expected_hashes
from pow_mcp.server.jobs.manager import JobManager
from pow_mcp.server.jobs.spec import TASK_REQUEST
from pow_mcp.server.schemas import (
    CancelAnswer,
    CleanupAnswer,
    JobAnswer,
    ListAnswer,
    StartAnswer,
    summary,
)
from pow_mcp.server.tools.args import (
    JOB_ID_PATTERN,
    MAX_TAGS,
    IsoTime,
    JobIdArgument,
    StartArguments,
    Tag,
    flat_tool,
)
from pow_mcp.server.tools.common import answer, describe, duration, hints, job_answer, tool_errors
from pow_mcp.store import JobQuery, JobRecord, JobStatus
from pow_mcp.store.query import MAX_PAGE

StatusName = Literal["queued", "waiting", "running", "paused", "completed", "failed", "cancelled"]


def start_text(record: JobRecord, difficulty: int, expected: int, seconds: float | None) -> str:
    eta = f"roughly {duration(seconds)}" if seconds is not None else "time unknown"
    if record.status is JobStatus.WAITING and record.waiting_info is not None:
        w = record.waiting_info
        if w.plan is not None:
            return (
                f"Started job {record.job_id}, waiting: the difficulty is {difficulty} at age "
                f"{w.current_age}; {w.note} ({eta} until a proof). "
            )
        return (
            f"Started job {record.job_id}, waiting: the difficulty is {difficulty} at age "
            f"{w.current_age}; hashing starts when it falls to {w.start_difficulty}, in about "
            f"{w.blocks_remaining} blocks ({eta} until a proof). "
        )
    blocked = f", after {', '.join(record.blocked_by)}" if record.blocked_by else ""
    return (
        f"Started job {record.job_id} ({record.status.value}{blocked}): difficulty "
        f"{difficulty}, about {expected:,} hashes, {eta}. "
    )


def start_answer(manager: JobManager, record: JobRecord) -> tuple[StartAnswer, str]:
    difficulty = manager.current_difficulty(record)
    expected, seconds = manager.estimate(record, difficulty)
    model = StartAnswer(
        job_id=record.job_id,
        status=record.status,
        prefix=record.job_data["prefix"],
        difficulty=difficulty,
        expected_hashes=expected,
        estimated_seconds=round(seconds, 3) if seconds is not None else None,
        kernel=manager.pool.kernel_name,
        waiting_info=record.waiting_info,
    )
    return model, start_text(record, difficulty, expected, seconds)


def tools(manager: JobManager) -> list[Tool]:
    # One long factory on purpose: each tool is a short closure over `manager` whose
    # docstring is the description an LLM reads; split up, they would read no better.
    @flat_tool(StartArguments)
    async def start_proof_of_work(args: StartArguments) -> Annotated[CallToolResult, StartAnswer]:
        """Start finding a SHA-256 proof of work in the background and return a job_id at once.

        The server hashes prefix + nonce (decimal) until the hex hash starts with `difficulty`
        zeros. Give either `prefix`, or a Structs action (`action_type`, `entity_id`,
        `block_start`, and `target_id` for raids) and the server builds the Structs message.
        Give either a fixed `difficulty`, or Structs' age-based `difficulty_range` with
        `current_block_height`: the job then waits until the difficulty has fallen far enough,
        hashes, and completes as soon as its best hash is accepted. Then call wait_for_job
        (or query_proof_of_work_status) with the job_id to get the nonce and hash. For
        several proofs at once use start_proof_of_work_batch.
        """
        with tool_errors(failed="the job could not be saved, so it was not started"):
            (record,) = await manager.start([args.spec()], task=TASK_REQUEST.get())
        model, text = start_answer(manager, record)
        return answer(model, text + "Call wait_for_job with this job_id for the nonce and hash.")

    async def query_proof_of_work_status(
        job_id: JobIdArgument,
    ) -> Annotated[CallToolResult, JobAnswer]:
        """Return a job's full record right now, without waiting: status, progress (hashes,
        hashrate, best_zeros, eta_seconds), and for completed jobs
        result.proof_of_work.nonce and .hash. Use wait_for_job to wait for the end instead."""
        with tool_errors(checked(job_id)):
            record = await manager.get(job_id)
        return job_answer(record)

    async def wait_for_job(
        job_id: JobIdArgument,
        ctx: Context,
        timeout_seconds: Annotated[
            float,
            Field(
                ge=0,
                le=300,
                strict=True,
                description="Longest wait in seconds, 0-300 (default 30). If the job is still "
                "running then, you get its progress with timed_out=true; call again to keep "
                "waiting.",
            ),
        ] = 30,
    ) -> Annotated[CallToolResult, JobAnswer]:
        """Wait until a job completes, fails or is cancelled, or until timeout_seconds pass,
        then return its record (as query_proof_of_work_status does). Sends progress
        notifications (hashes done of expected) while waiting if the client asks for them.
        For several jobs use wait_for_jobs."""

        async def report(record: JobRecord) -> None:
            difficulty = manager.current_difficulty(record)
            total = float(expected_hashes(difficulty)) if difficulty else None
            await ctx.report_progress(record.progress.hashes, total, describe(record))

        # Without a progress token nothing would be sent: a plain wait sleeps until the end.
        asked = "progress_token" in (ctx.request_context.meta or {})
        with tool_errors(checked(job_id)):
            record, timed_out = await manager.wait(
                job_id, timeout_seconds, report if asked else None
            )
        return job_answer(record, timed_out)

    async def list_jobs(
        status: Annotated[
            StatusName | list[StatusName] | None,
            Field(description="Only jobs with this status, or any of these. Default: all."),
        ] = None,
        tags: Annotated[
            list[Tag],
            Field(max_length=MAX_TAGS, description="Only jobs carrying all of these tags."),
        ] = [],  # noqa: B006  # read only; the schema shows the default
        batch_id: Annotated[
            str | None,
            Field(
                pattern=JOB_ID_PATTERN,
                description="Only the jobs of this start_proof_of_work_batch.",
            ),
        ] = None,
        created_after: Annotated[
            IsoTime | None,
            Field(description="Only jobs created after this ISO 8601 time (UTC if no zone)."),
        ] = None,
        created_before: Annotated[
            IsoTime | None,
            Field(description="Only jobs created before this ISO 8601 time (UTC if no zone)."),
        ] = None,
        sort_by: Annotated[
            Literal["created_at", "updated_at", "priority"],
            Field(description="created_at (default), updated_at or priority."),
        ] = "created_at",
        order: Annotated[
            Literal["desc", "asc"], Field(description="desc (default: newest first) or asc.")
        ] = "desc",
        limit: Annotated[
            int, Field(ge=1, le=MAX_PAGE, strict=True, description="Page size, 1-1000.")
        ] = 50,
        offset: Annotated[
            int, Field(ge=0, strict=True, description="Jobs to skip, for the next page.")
        ] = 0,
    ) -> Annotated[CallToolResult, ListAnswer]:
        """List jobs with a short summary of each and the total count, to find a job_id or
        see what is running. Filter by status (one or several), tags, batch_id or creation
        time; sort by created_at, updated_at or priority; page with limit and offset."""
        statuses = [status] if isinstance(status, str) else status
        query = JobQuery(
            statuses=frozenset(JobStatus(s) for s in statuses) if statuses else None,
            tags=frozenset(tags),
            batch_id=batch_id,
            created_after=_utc(created_after),
            created_before=_utc(created_before),
            sort_by=sort_by,
            descending=order == "desc",
            limit=limit,
            offset=offset,
        )
        with tool_errors(failed="the jobs could not be read"):
            records, total = await manager.find(query)
        jobs = [summary(r, manager.current_difficulty(r)) for r in records]
        lines = [f"{len(records)} of {total} jobs:"]
        lines += [f"- {r.job_id} {r.status.value}" for r in records]
        return answer(
            ListAnswer(jobs=jobs, total=total, limit=limit, offset=offset), "\n".join(lines)
        )

    async def cancel_job(
        job_id: JobIdArgument,
    ) -> Annotated[CallToolResult, CancelAnswer]:
        """Stop a queued, waiting, running or paused job, wherever it runs; its status becomes
        cancelled. A job that has already ended is left as it is (cancelled=false)."""
        with tool_errors(checked(job_id), "the cancel could not be saved"):
            record, cancelled = await manager.cancel(job_id)
        message = (
            f"Job {job_id} cancelled."
            if cancelled
            else f"Job {job_id} had already ended as {record.status.value}; nothing to cancel."
        )
        model = CancelAnswer(
            job_id=job_id, status=record.status, cancelled=cancelled, message=message
        )
        return answer(model, message)

    async def cleanup_jobs(
        max_age_seconds: Annotated[
            float,
            Field(
                ge=0,
                strict=True,
                description="Remove completed, failed and cancelled jobs that ended at "
                "least this many seconds ago (default 3600). 0 removes every finished job.",
            ),
        ] = 3600,
    ) -> Annotated[CallToolResult, CleanupAnswer]:
        """Delete finished jobs older than max_age_seconds from the job list and the store.
        Never touches queued, waiting, running or paused jobs. Returns how many and which."""
        with tool_errors(failed="the cleanup could not be saved, so no job was removed"):
            removed = await manager.cleanup(max_age_seconds)
        text = f"Removed {len(removed)} finished job(s)" + (
            ": " + ", ".join(removed) if removed else "."
        )
        return answer(CleanupAnswer(removed=len(removed), job_ids=removed), text)

    return [
        Tool.from_function(
            start_proof_of_work,
            title="Start a proof-of-work job",
            annotations=hints(read_only=False, destructive=False, idempotent=False),
        ),
        Tool.from_function(
            query_proof_of_work_status,
            title="Get a job's status and result",
            annotations=hints(read_only=True, destructive=False, idempotent=True),
        ),
        Tool.from_function(
            wait_for_job,
            title="Wait for a job to finish",
            annotations=hints(read_only=True, destructive=False, idempotent=True),
        ),
        Tool.from_function(
            list_jobs,
            title="List jobs",
            annotations=hints(read_only=True, destructive=False, idempotent=True),
        ),
        Tool.from_function(
            cancel_job,
            title="Cancel a job",
            annotations=hints(read_only=False, destructive=True, idempotent=True),
        ),
        Tool.from_function(
            cleanup_jobs,
            title="Remove old finished jobs",
            annotations=hints(read_only=False, destructive=True, idempotent=False),
        ),
    ]


def checked(job_id: str) -> str:
    """A job id as given, or a tool error if it cannot be one."""
    if not re.fullmatch(JOB_ID_PATTERN, job_id):
        raise ToolError(
            f"malformed job_id {job_id[:80]!r}: ids look like 'pow_1704067200000_k3j9x0a1bq'; "
            "use the job_id that start_proof_of_work returned, or list_jobs to find it"
        )
    return job_id


def _utc(value: datetime | None) -> datetime | None:
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=UTC)
