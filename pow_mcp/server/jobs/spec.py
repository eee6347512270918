"""What a job asks for (`JobSpec`), built from tool arguments or read back from a record."""

from __future__ import annotations

import secrets
import string
import time
from contextvars import ContextVar
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from pow_mcp.pow.scheduler import Priority
from pow_mcp.pow.scheme import ActionType, structs_prefix, validate_prefix

_BASE36 = string.digits + string.ascii_lowercase


class JobInputError(ValueError):
    """Arguments that cannot make a job; the message says what to change."""


@dataclass(frozen=True)
class TaskRequest:
    """A task-augmented call: the jobs it starts form one MCP task, kept at least `ttl`."""

    ttl_seconds: float | None = None


# Set by the MCP Tasks layer (server/tasks/) around a tool call that creates a task.
TASK_REQUEST: ContextVar[TaskRequest | None] = ContextVar("task_request", default=None)


def new_id(kind: str) -> str:
    """`<kind>_<unix ms>_<10 random base36 characters from a CSPRNG>`."""
    suffix = "".join(secrets.choice(_BASE36) for _ in range(10))
    return f"{kind}_{int(time.time() * 1000)}_{suffix}"


@dataclass(frozen=True)
class JobSpec:
    """A validated request for a proof: what to hash, how hard, and how to run it."""

    prefix: str
    difficulty: int | None = None
    difficulty_range: float | None = None
    block_start: int | None = None
    current_block_height: int | None = None
    action_type: str | None = None
    entity_id: str | None = None
    target_id: str | None = None
    max_iterations: int | None = None
    priority: str = "normal"
    timeout_seconds: float | None = None
    player_id: str | None = None
    label: str | None = None
    depends_on: tuple[str, ...] = ()
    max_retries: int = 0
    retry_delay_seconds: float = 5.0
    tags: tuple[str, ...] = field(default=(), compare=False)  # kept on the record itself

    @property
    def age_based(self) -> bool:
        return self.difficulty_range is not None

    @property
    def rank(self) -> Priority:
        return Priority[self.priority.upper()]

    def job_data(self) -> dict[str, Any]:
        """The job's inputs as stored in the record (unset ones left out)."""
        data = {key: value for key, value in asdict(self).items() if value not in (None, ())}
        data.pop("tags", None)
        if "depends_on" in data:
            data["depends_on"] = list(data["depends_on"])
        if not self.max_retries:
            data.pop("max_retries", None)
            data.pop("retry_delay_seconds", None)
        return data

    @classmethod
    def from_job_data(cls, data: dict[str, Any]) -> JobSpec:
        """The spec a stored job was created with; `JobInputError` if it cannot be rebuilt."""
        known = {f.name for f in fields(cls)} - {"tags"}
        values = {key: value for key, value in data.items() if key in known}
        if not isinstance(values.get("prefix"), str):
            raise JobInputError("the stored job has no prefix to hash")
        if "depends_on" in values:
            values["depends_on"] = tuple(values["depends_on"])
        try:
            spec = cls(**values)
        except TypeError as exc:
            raise JobInputError(f"the stored job's inputs are not readable: {exc}") from None
        if (spec.difficulty is None) == (spec.difficulty_range is None):
            raise JobInputError("the stored job has neither a difficulty nor a difficulty_range")
        return spec


def message_prefix(
    prefix: str | None,
    action_type: str | None,
    entity_id: str | None,
    block_start: int | None,
    target_id: str | None,
) -> str:
    """The text hashed before the nonce, from either input form; JobInputError if neither."""
    structs_args = {
        "action_type": action_type,
        "entity_id": entity_id,
        "target_id": target_id,
    }
    if prefix is not None:
        given = [name for name, value in structs_args.items() if value is not None]
        if given:
            raise JobInputError(
                f"give either prefix (generic) or action_type + entity_id + block_start "
                f"(Structs), not both: remove {', '.join(given)} or prefix"
            )
        try:
            return validate_prefix(prefix)
        except ValueError as exc:
            raise JobInputError(str(exc)) from None
    missing = [n for n in ("action_type", "entity_id") if structs_args[n] is None]
    if block_start is None:
        missing.append("block_start")
    if missing:
        raise JobInputError(
            "no message to hash: give prefix (e.g. 'abc-'), or action_type, entity_id and "
            f"block_start for a Structs proof (missing: {', '.join(missing)})"
        )
    assert action_type is not None and entity_id is not None and block_start is not None
    try:
        return validate_prefix(
            structs_prefix(ActionType(action_type), entity_id, block_start, target_id)
        )
    except ValueError as exc:
        raise JobInputError(str(exc)) from None


def check_difficulty_choice(
    difficulty: int | None,
    difficulty_range: float | None,
    block_start: int | None,
) -> None:
    if (difficulty is None) == (difficulty_range is None):
        raise JobInputError(
            "give exactly one of difficulty (fixed leading zeros, e.g. 5) or difficulty_range "
            "(Structs age-based, e.g. 1800, with block_start and current_block_height)"
        )
    if difficulty_range is not None and block_start is None:
        raise JobInputError("difficulty_range needs block_start: the block the action started")
