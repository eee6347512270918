"""Steering jobs: pause and resume, a batch of starts, waiting for several jobs."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ToolError
from mcp.server.mcpserver.tools import Tool
from mcp_types import CallToolResult
from pydantic import Field, WithJsonSchema

from pow_mcp.server.jobs.manager import JobManager
from pow_mcp.server.jobs.spec import TASK_REQUEST, new_id
from pow_mcp.server.schemas import BatchAnswer, ControlAnswer, WaitManyAnswer
from pow_mcp.server.tools.args import MAX_TAGS, JobIdArgument, StartArguments, Tag, parse
from pow_mcp.server.tools.common import answer, describe, hints, tool_errors
from pow_mcp.server.tools.jobs import checked, start_answer
from pow_mcp.store import JobRecord, JobStatus

MAX_BATCH = 100


def tools(manager: JobManager) -> list[Tool]:
    # Long on purpose, like tools/jobs.py's: one short closure per tool, each docstring the
    # tool's description.
    async def pause_job(job_id: JobIdArgument) -> Annotated[CallToolResult, ControlAnswer]:
        """Pause a queued, waiting or running job: its workers are freed within half a second
        and it keeps its checkpoint and best hash so far; resume_job continues it without
        hashing any nonce twice. Paused jobs stay paused across server restarts. Pausing a
        paused job changes nothing. Use it to make room for a more urgent job."""
        with tool_errors(checked(job_id), "the pause could not be saved"):
            record, changed = await manager.pause(job_id)
        return _control(record, changed, "pause")

    async def resume_job(job_id: JobIdArgument) -> Annotated[CallToolResult, ControlAnswer]:
        """Resume a paused job: it is queued again and continues from its checkpoint
        (progress.hashes keeps counting up). Resuming a job that is not paused but still
        going (queued, waiting, running) changes nothing."""
        with tool_errors(checked(job_id), "the resume could not be saved"):
            record, changed = await manager.resume(job_id)
        return _control(record, changed, "resume")

    async def start_proof_of_work_batch(
        jobs: Annotated[
            list[dict[str, Any]],
            Field(min_length=1, max_length=MAX_BATCH),
            WithJsonSchema(
                {
                    "type": "array",
                    "minItems": 1,
                    "maxItems": MAX_BATCH,
                    "items": StartArguments.model_json_schema(),
                    "description": "1-100 jobs, each with the arguments of "
                    "start_proof_of_work (prefix or action_type + entity_id + block_start; "
                    "difficulty or difficulty_range; and the optional ones).",
                }
            ),
        ],
        tags: Annotated[
            list[Tag],
            Field(
                max_length=MAX_TAGS,
                description="Tags added to every job of the batch (with a job's own, at most "
                "16 in all).",
            ),
        ] = [],  # noqa: B006  # read only; the schema shows the default
    ) -> Annotated[CallToolResult, BatchAnswer]:
        """Start several proof-of-work jobs in one call, all or none: every entry is checked
        first, and one bad entry is an error naming its index and field, with nothing
        started. Returns a batch_id and the job_ids in the order given. Then call
        wait_for_jobs with the job_ids (mode 'all' or 'any'), or list_jobs with the
        batch_id."""
        with tool_errors():
            args = [
                parse(StartArguments, entry, where=f"jobs[{i}].") for i, entry in enumerate(jobs)
            ]
        for i, entry in enumerate(args):
            if len(set(entry.tags) | set(tags)) > MAX_TAGS:
                raise ToolError(f"jobs[{i}].tags: at most {MAX_TAGS} tags with the batch's tags")
        batch_id = new_id("batch")
        with tool_errors(failed="the batch could not be saved, so no job was started"):
            records = await manager.start(
                [a.spec() for a in args], tags=tags, batch_id=batch_id, task=TASK_REQUEST.get()
            )
        model = BatchAnswer(
            batch_id=batch_id,
            job_ids=[r.job_id for r in records],
            statuses=[r.status for r in records],
            tags=sorted(set(tags)),
        )
        lines = [f"Started batch {batch_id} with {len(records)} jobs:"]
        lines += [f"- {start_answer(manager, r)[1].strip()}" for r in records]
        lines.append("Call wait_for_jobs with these job_ids for the nonces and hashes.")
        return answer(model, "\n".join(lines))

    async def wait_for_jobs(
        job_ids: Annotated[
            list[JobIdArgument],
            Field(min_length=1, max_length=MAX_BATCH, description="1-100 job_ids to wait for."),
        ],
        ctx: Context,
        mode: Annotated[
            Literal["all", "any"],
            Field(description="all (default): until every job has ended; any: until one has."),
        ] = "all",
        timeout_seconds: Annotated[
            float,
            Field(
                ge=0,
                le=300,
                strict=True,
                description="Longest wait in seconds, 0-300 (default 30); then the records "
                "come back as they are, with timed_out=true: call again to keep waiting.",
            ),
        ] = 30,
    ) -> Annotated[CallToolResult, WaitManyAnswer]:
        """Wait until all (mode 'all') or any (mode 'any') of the jobs have completed, failed
        or been cancelled, or timeout_seconds pass. Returns their records in the order asked,
        the ids of those that ended (done) and timed_out. Sends progress notifications
        counting finished jobs if the client asks for them."""
        ids = [checked(job_id) for job_id in dict.fromkeys(job_ids)]

        async def report(done: int, total: int) -> None:
            await ctx.report_progress(done, total, f"{done} of {total} jobs finished")

        with tool_errors(failed="the jobs could not be read"):
            records, timed_out = await manager.wait_many(
                ids, any_done=mode == "any", seconds=timeout_seconds, report=report
            )
        done = [r.job_id for r in records if r.is_terminal]
        head = f"{len(done)} of {len(records)} jobs finished"
        head += " when the wait ended." if timed_out else "."
        lines = [head, *(f"- {describe(r)}" for r in records)]
        model = WaitManyAnswer(jobs=records, done=done, timed_out=timed_out)
        return answer(model, "\n".join(lines))

    return [
        Tool.from_function(
            pause_job,
            title="Pause a job",
            annotations=hints(read_only=False, destructive=False, idempotent=True),
        ),
        Tool.from_function(
            resume_job,
            title="Resume a paused job",
            annotations=hints(read_only=False, destructive=False, idempotent=True),
        ),
        Tool.from_function(
            start_proof_of_work_batch,
            title="Start several proof-of-work jobs",
            annotations=hints(read_only=False, destructive=False, idempotent=False),
        ),
        Tool.from_function(
            wait_for_jobs,
            title="Wait for several jobs",
            annotations=hints(read_only=True, destructive=False, idempotent=True),
        ),
    ]


def _control(record: JobRecord, changed: bool, verb: str) -> CallToolResult:
    job_id, status = record.job_id, record.status.value
    if record.is_terminal:
        raise ToolError(
            f"job {job_id} has already ended ({status}); only queued, waiting, running or "
            "paused jobs can be paused or resumed"
        )
    hashes = record.progress.hashes
    if changed and verb == "pause":
        message = describe(record)
    elif changed:
        message = (
            f"Job {job_id} is {status} again and goes on from its checkpoint "
            f"({hashes:,} hashes so far). Call wait_for_job for the nonce and hash."
        )
    elif verb == "pause":
        message = f"Job {job_id} was already paused; nothing changed."
    else:
        message = f"Job {job_id} is not paused ({status}); nothing changed."
    model = ControlAnswer(
        job_id=job_id,
        status=JobStatus(status),
        changed=changed,
        message=message,
        hashes=hashes,
    )
    return answer(model, message)
