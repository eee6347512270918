"""The job record: pydantic models, statuses and lenient timestamps.

Records serialise to the documented JSON shape with ISO 8601 UTC timestamps
(`2026-11-23T10:30:00.123456Z`). Loading is lenient so that files written by older
versions or other servers (structs-mcp) load as history: timestamps may be ISO
strings or unix seconds/milliseconds, other servers' status words are mapped (see
`LEGACY_STATUSES`) and unknown fields are kept (`extra="allow"`) so they survive
a load-save cycle. A status word nobody knows (a newer version's) raises
`FutureRecordError`: such a record is kept as it is, never rewritten.
"""

from __future__ import annotations

import copy
import json
import re
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, TypeVar

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator

INTERRUPTED_ERROR = "Job was interrupted by system shutdown"


class JobStatus(StrEnum):
    QUEUED = "queued"
    WAITING = "waiting"
    RUNNING = "running"
    PAUSED = "paused"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


TERMINAL: frozenset[JobStatus] = frozenset(
    {JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED}
)
# Statuses in which a server instance (the job's owner) is responsible for the job.
ACTIVE: frozenset[JobStatus] = frozenset({JobStatus.QUEUED, JobStatus.WAITING, JobStatus.RUNNING})
UNFINISHED: frozenset[JobStatus] = ACTIVE | {JobStatus.PAUSED}

# The owner of a job handed over to whichever instance runs next (a stopping server's
# queued jobs under JOBS_RECOVERY=resume, a job resumed from the command line).
ANY_INSTANCE = "*"

PRIORITIES = ("low", "normal", "high", "critical")  # the index is the priority's rank


def priority_rank(name: object) -> int:
    """0 (low) .. 3 (critical); anything unknown ranks as normal."""
    return PRIORITIES.index(name) if name in PRIORITIES else 1


class FutureRecordError(ValueError):
    """A record whose status this version does not know: keep it verbatim."""


# Status words other servers write, mapped to ours. Active-looking words map to an active
# status, so on load they become "interrupted" like our own unfinished jobs (nothing of theirs
# can still be running). The original word is kept in the record's extra field
# `legacy_status`. A word not listed here raises FutureRecordError.
LEGACY_STATUSES: dict[str, JobStatus] = {
    **{w: JobStatus.QUEUED for w in ("pending", "created", "new", "submitted", "scheduled")},
    **{w: JobStatus.WAITING for w in ("waiting_for_difficulty", "delayed", "deferred")},
    **{
        w: JobStatus.RUNNING
        for w in ("processing", "in_progress", "in-progress", "started", "active", "working")
    },
    **{w: JobStatus.COMPLETED for w in ("complete", "done", "success", "succeeded", "finished")},
    **{w: JobStatus.FAILED for w in ("failure", "error", "errored", "timeout", "timed_out")},
    **{w: JobStatus.CANCELLED for w in ("canceled", "aborted", "stopped")},
}

_STATUS_VALUES = frozenset(status.value for status in JobStatus)

_JOB_ID_MS = re.compile(r"^[A-Za-z]+_(\d{12,14})_")


def utc_now() -> datetime:
    """The current time as an aware UTC datetime."""
    return datetime.now(UTC)


def _as_utc(value: datetime) -> datetime:
    # Naive times in foreign files are taken as UTC; everything is kept and written as UTC.
    if value.tzinfo is UTC:
        return value
    return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)


# pydantic itself accepts ISO 8601 strings and unix seconds or milliseconds (numbers or
# numeric strings) and writes ISO 8601 with a `Z` suffix, e.g. `2026-11-23T10:30:00.123456Z`.
Timestamp = Annotated[datetime, AfterValidator(_as_utc)]


class Progress(BaseModel):
    model_config = ConfigDict(extra="allow")

    hashes: int = 0
    hashrate: float = 0.0
    best_zeros: int = 0
    eta_seconds: float | None = None
    best_nonce: str | None = None  # the best hash so far, kept across pauses and restarts
    best_hash: str | None = None
    note: str | None = None  # why the job is not moving, when something is wrong

    @field_validator("best_nonce", mode="before")
    @classmethod
    def _nonce_as_text(cls, value: object) -> object:
        return str(value) if isinstance(value, int) and not isinstance(value, bool) else value

    @field_validator("hashrate", mode="before")
    @classmethod
    def _null_rate(cls, value: object) -> object:
        # A non-finite rate is written as null; read it back as no rate rather than reject it.
        return 0.0 if value is None else value


class ProofOfWork(BaseModel):
    """A found proof. Every field is optional so foreign records load."""

    model_config = ConfigDict(extra="allow")

    hash: str | None = None
    nonce: str | None = None  # decimal string: nonces outgrow JSON-safe integers
    iterations: int | None = None
    valid: bool | None = None
    difficulty_met: int | bool | None = None  # leading zeros reached; bool in foreign files
    difficulty: int | None = None
    computation_time_ms: float | None = None

    @field_validator("nonce", mode="before")
    @classmethod
    def _nonce_as_text(cls, value: object) -> object:
        return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


class JobResult(BaseModel):
    model_config = ConfigDict(extra="allow")

    proof_of_work: ProofOfWork | None = None


class WaitingInfo(BaseModel):
    model_config = ConfigDict(extra="allow")

    current_age: int | None = None
    current_difficulty: int | None = None
    start_difficulty: int | None = None  # the difficulty when hashing starts
    blocks_remaining: int | None = None  # until hashing starts
    # TARGET_DIFFICULTY_START=auto: the job's plan (server/planner.py)
    plan: str | None = None
    target_zeros: int | None = None
    start_block: int | None = None
    expected_valid_block: int | None = None  # the median block of a valid proof
    valid_by_block: int | None = None  # valid by here with 95 % probability
    note: str | None = None


class Checkpoint(BaseModel):
    """Where a job's search stands, in its own search order (`layout`).

    Every position below `position` has been hashed except the `in_flight` chunks
    (start, count), which were handed out but not finished: a resumed search hashes those,
    then continues from `position`, and never hashes a position twice.
    """

    model_config = ConfigDict(extra="allow")

    layout: int = 1
    position: int = 0
    in_flight: list[tuple[int, int]] = Field(default_factory=list)


class Attempt(BaseModel):
    model_config = ConfigDict(extra="allow")

    started_at: Timestamp
    ended_at: Timestamp | None = None
    outcome: str | None = None  # the status the attempt ended in, or "retried"
    error: str | None = None
    hashes: int = 0
    instance: str | None = None  # the server instance that ran it (the job's owner then)


class Recovery(BaseModel):
    model_config = ConfigDict(extra="allow")

    at: Timestamp
    from_status: str
    hashes: int = 0


class JobRecord(BaseModel):
    """One job as the store keeps it and `query_proof_of_work_status` returns it."""

    model_config = ConfigDict(extra="allow")

    job_id: str
    status: JobStatus
    created_at: Timestamp = Field(default_factory=utc_now)
    started_at: Timestamp | None = None
    updated_at: Timestamp = Field(default_factory=utc_now)
    completed_at: Timestamp | None = None
    job_data: dict[str, Any] = Field(default_factory=dict)
    progress: Progress = Field(default_factory=Progress)
    error: str | None = None
    result: JobResult | None = None
    waiting_info: WaitingInfo | None = None
    valid_from_block: int | None = None
    owner: str | None = None  # the server instance that runs (or last ran) the job
    principal: str | None = None  # who asked for it (HTTP token name); None: everyone's
    batch_id: str | None = None
    task_id: str | None = None  # set on the job that heads an MCP task (its id, or its batch's)
    tags: list[str] = Field(default_factory=list)
    blocked_by: list[str] = Field(default_factory=list)  # unfinished jobs it depends on
    run_after: Timestamp | None = None  # a retry waits until then
    keep_until: Timestamp | None = None  # cleanup leaves the job alone until then
    checkpoint: Checkpoint | None = None
    run_seconds: float = 0.0  # time spent running, over every attempt (timeout_seconds)
    attempts: list[Attempt] = Field(default_factory=list)
    recoveries: list[Recovery] = Field(default_factory=list)
    kernel: str | None = None

    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL

    @property
    def priority(self) -> int:
        return priority_rank(self.job_data.get("priority"))

    @property
    def finished_at(self) -> datetime:
        """When a terminal record stopped changing, for retention."""
        return self.completed_at or self.updated_at or self.created_at

    @field_validator("checkpoint", mode="before")
    @classmethod
    def _legacy_checkpoint(cls, value: object) -> object:
        # Before layouts, the checkpoint was a bare nonce below which everything was hashed.
        if isinstance(value, int) and not isinstance(value, bool):
            return {"layout": 1, "position": value}
        return value

    @model_validator(mode="before")
    @classmethod
    def _accept_foreign(cls, data: Any) -> Any:
        """Normalise records written by other servers or older versions."""
        if not isinstance(data, dict):
            return data
        data = dict(data)
        _normalise_status(data)
        for name in ("job_data", "progress"):
            if data.get(name, ...) is None:
                del data[name]  # null where we always have a value: take the default
        for name in ("job_data", "progress", "result", "waiting_info"):
            _stash_if_not_object(data, name)
        error = data.get("error")
        if error is not None and not isinstance(error, str):
            data["error"] = json.dumps(error, default=str)
        _fill_timestamps(data)
        return data


def _normalise_status(data: dict[str, Any]) -> None:
    raw = data.get("status")
    if raw is None or (isinstance(raw, str) and raw in _STATUS_VALUES):
        return  # a missing status leaves the record invalid: it is not a job record at all
    word = str(raw).strip().lower()
    status = JobStatus(word) if word in _STATUS_VALUES else LEGACY_STATUSES.get(word)
    if status is None:
        raise FutureRecordError(f"status {raw!r} is unknown to this version of pow-mcp")
    data["legacy_status"] = raw
    data["status"] = status


def _stash_if_not_object(data: dict[str, Any], name: str) -> None:
    # A foreign shape (say a bare number for progress) is kept aside rather than rejected.
    value = data.get(name)
    if value is not None and not isinstance(value, dict | BaseModel):
        data[f"legacy_{name}"] = data.pop(name)


def _fill_timestamps(data: dict[str, Any]) -> None:
    if data.get("created_at") is None:
        fallback = data.get("started_at") or data.get("updated_at") or data.get("completed_at")
        if fallback is None:
            match = _JOB_ID_MS.match(str(data.get("job_id", "")))
            fallback = int(match.group(1)) if match else None
        if fallback is not None:
            data["created_at"] = fallback
    if data.get("updated_at") is None:
        latest = data.get("completed_at") or data.get("started_at") or data.get("created_at")
        if latest is not None:
            data["updated_at"] = latest


def copy_record(record: JobRecord) -> JobRecord:
    """An independent copy, several times cheaper than `model_copy(deep=True)`.

    The store hands out and takes in copies so that a caller mutating its record in place
    can never change what the store holds (or make a change visible before it is durable).
    """
    clone = _copy_model(record)
    fields = clone.__dict__  # model_copy() gave the clone its own __dict__
    fields["job_data"] = copy.deepcopy(record.job_data)
    fields["progress"] = _copy_model(record.progress)
    if record.waiting_info is not None:
        fields["waiting_info"] = _copy_model(record.waiting_info)
    if record.result is not None:
        result = fields["result"] = _copy_model(record.result)
        if record.result.proof_of_work is not None:
            result.__dict__["proof_of_work"] = _copy_model(record.result.proof_of_work)
    if record.checkpoint is not None:
        checkpoint = fields["checkpoint"] = _copy_model(record.checkpoint)
        checkpoint.__dict__["in_flight"] = list(record.checkpoint.in_flight)
    fields["tags"] = list(record.tags)
    fields["blocked_by"] = list(record.blocked_by)
    fields["attempts"] = [_copy_model(a) for a in record.attempts]
    fields["recoveries"] = [_copy_model(r) for r in record.recoveries]
    return clone


_Model = TypeVar("_Model", bound=BaseModel)


def _copy_model(model: _Model) -> _Model:
    """A shallow copy with its own copy of any unknown (extra) fields."""
    clone = model.model_copy()
    if model.__pydantic_extra__:
        clone.__pydantic_extra__ = copy.deepcopy(model.__pydantic_extra__)
    return clone
