"""Tool answers: the structured content each tool returns, as an LLM reads its schema."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any, TypeVar

from pydantic import BaseModel, Field

from pow_mcp.store.record import JobRecord, JobStatus, WaitingInfo

log = logging.getLogger(__name__)
T = TypeVar("T")


class StartAnswer(BaseModel):
    """What start_proof_of_work returns at once."""

    job_id: str = Field(description="Id to pass to wait_for_job / query_proof_of_work_status.")
    status: JobStatus
    prefix: str = Field(description="The exact text hashed before the nonce.")
    difficulty: int = Field(description="Leading zeros required now (age-based: current value).")
    expected_hashes: int = Field(description="Mean number of hashes to find a proof: 16^D.")
    estimated_seconds: float | None = Field(
        description="Seconds until a proof at the pool's measured rate; for a waiting job, the "
        "blocks still to pass plus the hashing at the start difficulty."
    )
    kernel: str = Field(description="The hashing kernel the workers run.")
    waiting_info: WaitingInfo | None = Field(
        default=None, description="Age-based jobs: the age, difficulty and plan now."
    )
    job: JobRecord | None = Field(
        default=None,
        description="Only in the result of an MCP task: the job's full record, with the proof.",
    )


class JobAnswer(JobRecord):
    """A job record as query_proof_of_work_status and wait_for_job return it."""

    timed_out: bool | None = Field(
        default=None, description="wait_for_job only: true if the wait ended before the job did."
    )


class JobSummary(BaseModel):
    job_id: str
    status: JobStatus
    created_at: datetime | None = None
    completed_at: datetime | None = None
    prefix: str | None = None
    difficulty: int | None = None
    hashes: int = 0
    nonce: str | None = None
    label: str | None = None
    player_id: str | None = None
    error: str | None = None
    tags: list[str] = []
    batch_id: str | None = None
    blocked_by: list[str] = []


class ListAnswer(BaseModel):
    jobs: list[JobSummary] = Field(description="In the order asked (newest first by default).")
    total: int = Field(description="How many jobs match the filter in all.")
    limit: int
    offset: int


class ControlAnswer(BaseModel):
    """What pause_job and resume_job return."""

    job_id: str
    status: JobStatus = Field(description="The job's status after the call.")
    changed: bool = Field(description="False if the job was already in that state.")
    message: str
    hashes: int = Field(description="Hashes done so far (kept across pauses).")


class BatchAnswer(BaseModel):
    """What start_proof_of_work_batch returns at once."""

    batch_id: str = Field(description="Pass it to list_jobs(batch_id=...) to see the batch.")
    job_ids: list[str] = Field(description="The new jobs, in the order of `jobs`.")
    statuses: list[JobStatus] = Field(description="Each job's status now, in the same order.")
    tags: list[str]
    jobs: list[JobRecord] | None = Field(
        default=None,
        description="Only in the result of an MCP task: the jobs' full records, with proofs.",
    )


class WaitManyAnswer(BaseModel):
    """What wait_for_jobs returns."""

    jobs: list[JobRecord] = Field(description="The records, in the order of job_ids.")
    done: list[str] = Field(description="The ids of the jobs that have ended.")
    timed_out: bool = Field(description="True if the wait ended before the jobs did.")


class CleanupAnswer(BaseModel):
    removed: int
    job_ids: list[str]


class CancelAnswer(BaseModel):
    job_id: str
    status: JobStatus
    cancelled: bool = Field(description="False if the job had already ended.")
    message: str


class VerifyAnswer(BaseModel):
    valid: bool = Field(description="Hash meets the difficulty (and matches `hash` if given).")
    hash: str = Field(description="SHA-256 of message, recomputed by the server.")
    message: str = Field(description="The exact text that was hashed.")
    leading_zeros: int
    required_difficulty: int
    hash_matches: bool | None = Field(
        default=None, description="Whether the given hash equals the recomputed one."
    )
    valid_from_block: int | None = Field(
        default=None, description="Age-based only: first block height accepting this proof."
    )


def summary(record: JobRecord, difficulty: int | None = None) -> JobSummary:
    """A list entry. A stored job_data field of the wrong type (a record written by hand,
    or by something else) is shown as null, with a warning, and never fails the page."""
    data: dict[str, Any] = record.job_data or {}
    proof = record.result.proof_of_work if record.result else None
    stored_difficulty = _typed(record, "difficulty", int)
    return JobSummary(
        job_id=record.job_id,
        status=record.status,
        created_at=record.created_at,
        completed_at=record.completed_at,
        prefix=_typed(record, "prefix", str),
        difficulty=difficulty
        or stored_difficulty
        or (record.waiting_info.current_difficulty if record.waiting_info else None),
        hashes=record.progress.hashes if record.progress else 0,
        nonce=proof.nonce if proof else None,
        label=_typed(record, "label", str) if "label" in data else None,
        player_id=_typed(record, "player_id", str) if "player_id" in data else None,
        error=record.error,
        tags=record.tags,
        batch_id=record.batch_id,
        blocked_by=record.blocked_by,
    )


def _typed(record: JobRecord, name: str, kind: type[T]) -> T | None:
    value = (record.job_data or {}).get(name)
    if value is None or (isinstance(value, kind) and not isinstance(value, bool)):
        return value
    log.warning(
        "job %s: its stored job_data.%s is %s, not %s; listed as null",
        record.job_id,
        name,
        type(value).__name__,
        kind.__name__,
    )
    return None
