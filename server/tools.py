"""The seven MCP tools and the two job resources, as an LLM sees them."""

from __future__ import annotations

import json
import re
from typing import Annotated, Literal

from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ResourceNotFoundError, ToolError
from mcp_types import CallToolResult, TextContent, ToolAnnotations
from pydantic import BaseModel, Field

from pow.difficulty import age_difficulty, expected_hashes, valid_from_block
from pow.scheme import parse_nonce, verify
from server.manager import JobManager, UnknownJob
from server.schemas import (
    Action,
    BlockStart,
    CancelAnswer,
    CleanupAnswer,
    CurrentBlockHeight,
    Difficulty,
    DifficultyRange,
    EntityId,
    JobAnswer,
    ListAnswer,
    Prefix,
    PriorityName,
    StartAnswer,
    TargetId,
    VerifyAnswer,
    summary,
)
from server.spec import JobInputError, JobSpec, check_difficulty_choice, message_prefix
from store import JobQuery, StoreError
from store.record import JobRecord, JobStatus

_JOB_ID = re.compile(r"^[A-Za-z0-9_-]{1,128}$")

JobId = Annotated[
    str,
    Field(
        description="The job_id that start_proof_of_work returned, e.g. "
        "'pow_1704067200000_k3j9x0a1bq'. list_jobs shows existing ids."
    ),
]


def _hints(title: str, *, read_only: bool, destructive: bool, idempotent: bool) -> ToolAnnotations:
    """Every hint set: one left out means the protocol's default (destructive, not idempotent).

    No tool reaches outside this server (BLOCK_HEIGHT_URL is the operator's, read-only).
    """
    return ToolAnnotations(
        title=title,
        read_only_hint=read_only,
        destructive_hint=destructive,
        idempotent_hint=idempotent,
        open_world_hint=False,
    )


def _answer(model: BaseModel, text: str) -> CallToolResult:
    return CallToolResult(
        content=[TextContent(type="text", text=text)],
        structured_content=model.model_dump(mode="json"),
    )


def _checked_job_id(job_id: str) -> str:
    if not _JOB_ID.fullmatch(job_id):
        raise ToolError(
            f"malformed job_id {job_id[:80]!r}: ids look like 'pow_1704067200000_k3j9x0a1bq'; "
            "use the job_id that start_proof_of_work returned, or list_jobs to find it"
        )
    return job_id


def store_failed(what: str, exc: StoreError) -> ToolError:
    """A tool error for a store that could not be read or written: says what did not happen."""
    return ToolError(
        f"{what}: {exc}. Nothing was changed; check the job store (its disk, or its "
        "database), then try again"
    )


def _unknown(job_id: str) -> ToolError:
    return ToolError(
        f"no job with id {job_id!r}: check the id, or call list_jobs to see existing jobs "
        "(finished jobs are removed after the retention period)"
    )


def describe(record: JobRecord) -> str:
    """One or two lines an LLM can act on."""
    head = f"Job {record.job_id} is {record.status.value}"
    proof = record.result.proof_of_work if record.result else None
    if record.status is JobStatus.COMPLETED and proof is not None:
        text = f"{head}: nonce {proof.nonce}, hash {proof.hash}"
        if record.valid_from_block is not None:
            text += f"; valid from block {record.valid_from_block}"
        return text + "."
    if record.status in (JobStatus.FAILED, JobStatus.CANCELLED):
        return f"{head}" + (f": {record.error}" if record.error else ".")
    if record.status is JobStatus.WAITING and record.waiting_info:
        w = record.waiting_info
        return (
            f"{head}: difficulty is {w.current_difficulty} at age {w.current_age}; hashing starts "
            f"at {w.start_difficulty}, in about {w.blocks_remaining} blocks. "
            "Call wait_for_job again later."
        )
    p = record.progress
    eta = f", about {p.eta_seconds:.0f} s to go" if p.eta_seconds is not None else ""
    return (
        f"{head}: {p.hashes:,} hashes at {p.hashrate / 1e6:.2f} M/s, best {p.best_zeros} "
        f"zeros{eta}. Call wait_for_job again to keep waiting."
    )


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.3g} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 86400 * 730:
        return f"{seconds / 3600:.0f} h"
    return f"{seconds / 31_557_600:.2g} years"


def _job_answer(record: JobRecord, timed_out: bool | None = None) -> CallToolResult:
    answer = JobAnswer.model_validate({**record.model_dump(), "timed_out": timed_out})
    text = describe(record)
    if timed_out:
        text = "Still not finished when the wait ended. " + text
    return _answer(answer, text)


def register(mcp: MCPServer, manager: JobManager) -> None:
    """Add every tool and resource of the SPEC to `mcp`."""

    @mcp.tool(
        name="start_proof_of_work",
        annotations=_hints(
            "Start a proof-of-work job", read_only=False, destructive=False, idempotent=False
        ),
    )
    async def start_proof_of_work(
        prefix: Prefix = None,
        action_type: Action = None,
        entity_id: EntityId = None,
        target_id: TargetId = None,
        block_start: BlockStart = None,
        difficulty: Difficulty = None,
        difficulty_range: DifficultyRange = None,
        current_block_height: CurrentBlockHeight = None,
        max_iterations: Annotated[
            int | None,
            Field(
                ge=1,
                description="Give up (status failed) after this many hashes. Default: no limit.",
            ),
        ] = None,
        priority: Annotated[
            PriorityName,
            Field(description="Which jobs the workers serve first when several run at once."),
        ] = "normal",
        timeout_seconds: Annotated[
            float | None,
            Field(
                gt=0,
                description="Fail the job if it has no proof after this many seconds. "
                "Default: no limit.",
            ),
        ] = None,
        player_id: Annotated[
            str | None,
            Field(
                max_length=128,
                description="Optional: whose job this is (kept as metadata, shown by list_jobs).",
            ),
        ] = None,
        label: Annotated[
            str | None,
            Field(
                max_length=256,
                description="Optional free text to recognise the job by in list_jobs.",
            ),
        ] = None,
    ) -> Annotated[CallToolResult, StartAnswer]:
        """Start finding a SHA-256 proof of work in the background and return a job_id at once.

        The server hashes prefix + nonce (decimal) until the hex hash starts with `difficulty`
        zeros. Give either `prefix`, or a Structs action (`action_type`, `entity_id`,
        `block_start`, and `target_id` for raids) and the server builds the Structs message.
        Give either a fixed `difficulty`, or Structs' age-based `difficulty_range` with
        `current_block_height`: the job then waits until the difficulty has fallen far enough,
        hashes, and completes as soon as its best hash is accepted. Then call wait_for_job
        (or query_proof_of_work_status) with the job_id to get the nonce and hash.
        """
        try:
            text_prefix = message_prefix(prefix, action_type, entity_id, block_start, target_id)
            check_difficulty_choice(difficulty, difficulty_range, block_start)
            spec = JobSpec(
                prefix=text_prefix,
                difficulty=difficulty,
                difficulty_range=difficulty_range,
                block_start=block_start,
                current_block_height=current_block_height,
                action_type=action_type,
                entity_id=entity_id,
                target_id=target_id,
                max_iterations=max_iterations,
                priority=priority,
                timeout_seconds=timeout_seconds,
                player_id=player_id,
                label=label,
            )
            (record,) = await manager.start([spec])
            now_difficulty = manager.current_difficulty(record)
        except JobInputError as exc:
            raise ToolError(str(exc)) from None
        except StoreError as exc:
            raise store_failed("the job could not be saved, so it was not started", exc) from None
        expected, seconds = manager.estimate(record, now_difficulty)
        answer = StartAnswer(
            job_id=record.job_id,
            status=record.status,
            prefix=text_prefix,
            difficulty=now_difficulty,
            expected_hashes=expected,
            estimated_seconds=round(seconds, 3) if seconds is not None else None,
            kernel=manager.pool.kernel_name,
            waiting_info=record.waiting_info.model_dump() if record.waiting_info else None,
        )
        eta = f"roughly {_duration(seconds)}" if seconds is not None else "time unknown"
        if record.status is JobStatus.WAITING and record.waiting_info is not None:
            w = record.waiting_info
            text = (
                f"Started job {record.job_id}, waiting: the difficulty is {now_difficulty} at "
                f"age {w.current_age}; hashing starts when it falls to {w.start_difficulty}, in "
                f"about {w.blocks_remaining} blocks ({eta} until a proof). "
            )
        else:
            text = (
                f"Started job {record.job_id} ({record.status.value}): difficulty "
                f"{now_difficulty}, about {expected:,} hashes, {eta}. "
            )
        return _answer(answer, text + "Call wait_for_job with this job_id for the nonce and hash.")

    @mcp.tool(
        name="query_proof_of_work_status",
        annotations=_hints(
            "Get a job's status and result", read_only=True, destructive=False, idempotent=True
        ),
    )
    async def query_proof_of_work_status(job_id: JobId) -> Annotated[CallToolResult, JobAnswer]:
        """Return a job's full record right now, without waiting: status, progress (hashes,
        hashrate, best_zeros, eta_seconds), and for completed jobs
        result.proof_of_work.nonce and .hash. Use wait_for_job to wait for the end instead."""
        try:
            record = await manager.get(_checked_job_id(job_id))
        except UnknownJob:
            raise _unknown(job_id) from None
        return _job_answer(record)

    @mcp.tool(
        name="wait_for_job",
        annotations=_hints(
            "Wait for a job to finish", read_only=True, destructive=False, idempotent=True
        ),
    )
    async def wait_for_job(
        job_id: JobId,
        ctx: Context,
        timeout_seconds: Annotated[
            float,
            Field(
                ge=0,
                le=300,
                description="Longest wait in seconds, 0-300 (default 30). If the "
                "job is still running then, you get its progress with timed_out=true; call "
                "again to keep waiting.",
            ),
        ] = 30,
    ) -> Annotated[CallToolResult, JobAnswer]:
        """Wait until a job completes, fails or is cancelled, or until timeout_seconds pass,
        then return its record (as query_proof_of_work_status does). Sends progress
        notifications (hashes done of expected) while waiting if the client asks for them."""
        try:
            job_id = _checked_job_id(job_id)

            async def report(record: JobRecord) -> None:
                difficulty = record.job_data.get("difficulty") or (
                    record.waiting_info.current_difficulty if record.waiting_info else None
                )
                total = float(expected_hashes(difficulty)) if difficulty else None
                await ctx.report_progress(record.progress.hashes, total, describe(record))

            record, timed_out = await manager.wait(job_id, timeout_seconds, report)
        except UnknownJob:
            raise _unknown(job_id) from None
        return _job_answer(record, timed_out)

    @mcp.tool(
        name="list_jobs",
        annotations=_hints("List jobs", read_only=True, destructive=False, idempotent=True),
    )
    async def list_jobs(
        status: Annotated[
            Literal["queued", "waiting", "running", "completed", "failed", "cancelled"] | None,
            Field(description="Only jobs with this status. Default: all."),
        ] = None,
        limit: Annotated[int, Field(ge=1, le=1000, description="Page size, 1-1000.")] = 50,
        offset: Annotated[int, Field(ge=0, description="Jobs to skip, for the next page.")] = 0,
    ) -> Annotated[CallToolResult, ListAnswer]:
        """List jobs newest first, with a short summary of each and the total count, to find
        a job_id or see what is running. Page with limit and offset."""
        statuses = frozenset({JobStatus(status)}) if status else None
        records, total = await manager.find(JobQuery(statuses=statuses, limit=limit, offset=offset))
        answer = ListAnswer(
            jobs=[summary(r) for r in records], total=total, limit=limit, offset=offset
        )
        lines = [f"{len(records)} of {total} jobs" + (f" ({status})" if status else "") + ":"]
        lines += [f"- {r.job_id} {r.status.value}" for r in records]
        return _answer(answer, "\n".join(lines))

    @mcp.tool(
        name="cancel_job",
        annotations=_hints("Cancel a job", read_only=False, destructive=True, idempotent=True),
    )
    async def cancel_job(job_id: JobId) -> Annotated[CallToolResult, CancelAnswer]:
        """Stop a queued, waiting or running job; its status becomes cancelled. A job that
        has already ended is left as it is (cancelled=false)."""
        try:
            record, cancelled = await manager.cancel(_checked_job_id(job_id))
        except UnknownJob:
            raise _unknown(job_id) from None
        except StoreError as exc:
            raise store_failed(
                "the cancel could not be saved; the job was not cancelled", exc
            ) from None
        message = (
            f"Job {job_id} cancelled."
            if cancelled
            else f"Job {job_id} had already ended as {record.status.value}; nothing to cancel."
        )
        return _answer(
            CancelAnswer(job_id=job_id, status=record.status, cancelled=cancelled, message=message),
            message,
        )

    @mcp.tool(
        name="cleanup_jobs",
        annotations=_hints(
            "Remove old finished jobs", read_only=False, destructive=True, idempotent=False
        ),
    )
    async def cleanup_jobs(
        max_age_seconds: Annotated[
            float,
            Field(
                ge=0,
                description="Remove completed, failed and cancelled jobs that ended at "
                "least this many seconds ago (default 3600). 0 removes every finished job.",
            ),
        ] = 3600,
    ) -> Annotated[CallToolResult, CleanupAnswer]:
        """Delete finished jobs older than max_age_seconds from the job list and the jobs
        file. Never touches queued, waiting or running jobs. Returns how many and which."""
        try:
            removed = await manager.cleanup(max_age_seconds)
        except StoreError as exc:
            raise store_failed(
                "the cleanup could not be saved, so no job was removed", exc
            ) from None
        text = f"Removed {len(removed)} finished job(s)" + (
            ": " + ", ".join(removed) if removed else "."
        )
        return _answer(CleanupAnswer(removed=len(removed), job_ids=removed), text)

    @mcp.tool(
        name="verify_proof_of_work",
        annotations=_hints("Check a nonce", read_only=True, destructive=False, idempotent=True),
    )
    async def verify_proof_of_work(
        nonce: Annotated[
            str,
            Field(
                description="The nonce to check, as a decimal string without sign or "
                "leading zeros. Example: '554171'."
            ),
        ],
        prefix: Prefix = None,
        action_type: Action = None,
        entity_id: EntityId = None,
        target_id: TargetId = None,
        block_start: BlockStart = None,
        difficulty: Difficulty = None,
        difficulty_range: DifficultyRange = None,
        age: Annotated[
            int | None,
            Field(
                ge=0,
                description="Age-based check: blocks since block_start. Or give "
                "current_block_height.",
            ),
        ] = None,
        current_block_height: CurrentBlockHeight = None,
        hash: Annotated[
            str | None,
            Field(
                max_length=64,
                description="Optional: the hash you were given, to check it "
                "matches the recomputed one (64 hex characters).",
            ),
        ] = None,
    ) -> Annotated[CallToolResult, VerifyAnswer]:
        """Recompute the SHA-256 of the same message start_proof_of_work would hash, plus
        `nonce`, and say whether it meets `difficulty` (or, age-based, the difficulty at `age`
        or `current_block_height`). Instant; no job is created."""
        try:
            text_prefix = message_prefix(prefix, action_type, entity_id, block_start, target_id)
            check_difficulty_choice(difficulty, difficulty_range, block_start)
            number = parse_nonce(nonce)
        except (JobInputError, ValueError) as exc:
            raise ToolError(str(exc)) from None
        valid_from = None
        if difficulty_range is None:
            assert difficulty is not None
            check = verify(text_prefix, number, difficulty, hash)
        else:
            assert block_start is not None
            if age is None and current_block_height is None:
                raise ToolError("an age-based check needs age or current_block_height")
            if age is None:
                assert current_block_height is not None
                age = current_block_height - block_start
                if age < 0:
                    raise ToolError("current_block_height is before block_start")
            check = verify(text_prefix, number, age_difficulty(age, difficulty_range), hash)
            valid_from = valid_from_block(block_start, check.leading_zeros, difficulty_range)
        required = check.required_difficulty
        answer = VerifyAnswer(
            valid=check.valid,
            hash=check.hash,
            message=text_prefix + nonce,
            leading_zeros=check.leading_zeros,
            required_difficulty=required,
            hash_matches=check.hash_matches,
            valid_from_block=valid_from,
        )
        verdict = "VALID" if check.valid else "NOT valid"
        text = (
            f"{verdict}: sha256({text_prefix + nonce!r}) = {check.hash} has "
            f"{check.leading_zeros} leading zeros; {required} required"
        )
        if check.hash_matches is False:
            text += "; the given hash does not match"
        if valid_from is not None:
            text += f"; accepted from block {valid_from}"
        return _answer(answer, text + ".")

    @mcp.resource(
        "pow://jobs",
        name="jobs",
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
        mime_type="application/json",
        description="One job's full record as JSON.",
    )
    async def job_resource(job_id: str) -> str:
        try:
            record = await manager.get(job_id)
        except UnknownJob:
            raise ResourceNotFoundError(f"no job with id {job_id!r}") from None
        return record.model_dump_json()
