"""Tool arguments and answers: the pydantic shapes an LLM reads in the tool schemas."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field

from store.record import JobRecord, JobStatus

ActionName = Literal[
    "struct_build_complete", "ore_miner_complete", "ore_refinery_complete", "planet_raid_complete"
]
PriorityName = Literal["low", "normal", "high", "critical"]

_ID_PATTERN = r"^[^\s\x00-\x1f\x7f]+$"

Prefix = Annotated[
    str | None,
    Field(
        min_length=1,
        max_length=1024,
        description="Generic mode: the exact text to hash before the nonce; the server hashes "
        "SHA-256(prefix + decimal nonce). 1-1024 characters, no control characters. "
        "Example: 'abc-'. Leave empty when using action_type.",
    ),
]
Action = Annotated[
    ActionName | None,
    Field(
        description="Structs mode: which action's proof to compute. The server builds the "
        "Structs message itself, e.g. '{entity_id}BUILD{block_start}NONCE'. Use with "
        "entity_id and block_start (and target_id for planet_raid_complete) instead of prefix.",
    ),
]
EntityId = Annotated[
    str | None,
    Field(
        min_length=1,
        max_length=128,
        pattern=_ID_PATTERN,
        description="Structs mode: the struct or player entity id (for planet_raid_complete, "
        "the fleet id), exactly as Structs writes it. Example: '5-42'.",
    ),
]
TargetId = Annotated[
    str | None,
    Field(
        min_length=1,
        max_length=128,
        pattern=_ID_PATTERN,
        description="planet_raid_complete only: the id of the planet being raided. Example: '2-1'.",
    ),
]
BlockStart = Annotated[
    int | None,
    Field(
        ge=0,
        description="Structs mode: the block height at which the action started "
        "(its blockStart). Example: 712049.",
    ),
]
Difficulty = Annotated[
    int | None,
    Field(
        ge=1,
        le=64,
        description="Fixed difficulty: leading hex '0' characters the hash must start with, "
        "1-64. Each step is 16x more work: 5 takes about a second, 8 minutes. "
        "Give this or difficulty_range, not both.",
    ),
]
DifficultyRange = Annotated[
    float | None,
    Field(
        gt=1,
        description="Structs age-based difficulty: the action's difficulty range R (> 1). The "
        "required zeros fall from 64 as blocks pass: 64 - int(log10(age)/log10(R)*63). "
        "Needs current_block_height (or the server's BLOCK_HEIGHT_URL). Example: 1800.",
    ),
]
CurrentBlockHeight = Annotated[
    int | None,
    Field(
        ge=0,
        description="The chain's current block height, for age-based difficulty. Later heights "
        "are extrapolated at the server's block time. Example: 712100.",
    ),
]


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
    waiting_info: dict[str, int] | None = None


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


class ListAnswer(BaseModel):
    jobs: list[JobSummary] = Field(description="Newest first.")
    total: int = Field(description="How many jobs match the filter in all.")
    limit: int
    offset: int


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


def summary(record: JobRecord) -> JobSummary:
    data: dict[str, Any] = record.job_data or {}
    proof = record.result.proof_of_work if record.result else None
    return JobSummary(
        job_id=record.job_id,
        status=record.status,
        created_at=record.created_at,
        completed_at=record.completed_at,
        prefix=data.get("prefix"),
        difficulty=data.get("difficulty")
        or (record.waiting_info.current_difficulty if record.waiting_info else None),
        hashes=record.progress.hashes if record.progress else 0,
        nonce=proof.nonce if proof else None,
        label=data.get("label"),
        player_id=data.get("player_id"),
        error=record.error,
    )
