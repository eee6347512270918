"""Tool arguments: one model per group of arguments, shared by the tools that take them.

`start_proof_of_work`, `start_proof_of_work_batch` (each entry) and `verify_proof_of_work`
take the same message and difficulty arguments (`ProofArguments`); a start adds how to
run the job (`StartArguments`). The rules between arguments (prefix or a Structs action,
difficulty or difficulty_range) live in the models' validators, so every tool checks them
the same way. `flat_tool` gives a tool function taking a model the flat argument list
MCP clients see.
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Annotated, Any, Literal, Self, TypeVar

from mcp.server.mcpserver.exceptions import ToolError
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)

from pow_mcp.pow.difficulty import age_difficulty
from pow_mcp.pow.scheme import parse_nonce
from pow_mcp.server.jobs.spec import JobInputError, JobSpec, check_difficulty_choice, message_prefix
from pow_mcp.store.record import PRIORITIES

ActionName = Literal[
    "struct_build_complete", "ore_miner_complete", "ore_refinery_complete", "planet_raid_complete"
]
PriorityName = Literal["low", "normal", "high", "critical"]
assert typing.get_args(PriorityName) == PRIORITIES

_ID_PATTERN = r"^[^\s\x00-\x1f\x7f]+$"
JOB_ID_PATTERN = r"^[A-Za-z0-9_-]{1,128}$"
TAG_PATTERN = r"^[A-Za-z0-9_.:-]{1,64}$"
MAX_TAGS = 16

JOB_ID_DESCRIPTION = (
    "A job_id that start_proof_of_work returned, e.g. 'pow_1704067200000_k3j9x0a1bq'. "
    "list_jobs shows existing ids."
)
JobId = Annotated[str, Field(pattern=JOB_ID_PATTERN, description=JOB_ID_DESCRIPTION)]
# A job id argument checked by the tool itself, for an error that says what ids look like.
JobIdArgument = Annotated[str, Field(max_length=200, description=JOB_ID_DESCRIPTION)]
Tag = Annotated[str, Field(pattern=TAG_PATTERN, description="1-64 of A-Z a-z 0-9 _ . : -")]


def _time_as_text(value: object) -> object:
    # pydantic would read a number as unix seconds; the schema says an ISO 8601 string.
    if not isinstance(value, str | datetime):
        raise ValueError("must be an ISO 8601 time as text, e.g. '2026-01-01T00:00:00Z'")
    return value


IsoTime = Annotated[datetime, BeforeValidator(_time_as_text)]


class ProofArguments(BaseModel):
    """What to hash and how hard: a message (generic or Structs) and a difficulty."""

    model_config = ConfigDict(extra="forbid")

    prefix: Annotated[
        str | None,
        Field(
            min_length=1,
            max_length=1024,
            description="Generic mode: the exact text to hash before the nonce; the server "
            "hashes SHA-256(prefix + decimal nonce). 1-1024 characters, no control characters. "
            "Example: 'abc-'. Leave empty when using action_type.",
        ),
    ] = None
    action_type: Annotated[
        ActionName | None,
        Field(
            description="Structs mode: which action's proof to compute. The server builds the "
            "Structs message itself, e.g. '{entity_id}BUILD{block_start}NONCE'. Use with "
            "entity_id and block_start (and target_id for planet_raid_complete) instead of "
            "prefix.",
        ),
    ] = None
    entity_id: Annotated[
        str | None,
        Field(
            min_length=1,
            max_length=128,
            pattern=_ID_PATTERN,
            description="Structs mode: the struct or player entity id (for "
            "planet_raid_complete, the fleet id), exactly as Structs writes it. Example: '5-42'.",
        ),
    ] = None
    target_id: Annotated[
        str | None,
        Field(
            min_length=1,
            max_length=128,
            pattern=_ID_PATTERN,
            description="planet_raid_complete only: the id of the planet being raided. "
            "Example: '2-1'.",
        ),
    ] = None
    block_start: Annotated[
        int | None,
        Field(
            ge=0,
            strict=True,
            description="Structs mode: the block height at which the action started "
            "(its blockStart). Example: 712049.",
        ),
    ] = None
    difficulty: Annotated[
        int | None,
        Field(
            ge=1,
            le=64,
            strict=True,
            description="Fixed difficulty: leading hex '0' characters the hash must start with, "
            "1-64. Each step is 16x more work: 5 takes about a second, 8 minutes. "
            "Give this or difficulty_range, not both.",
        ),
    ] = None
    difficulty_range: Annotated[
        float | None,
        Field(
            gt=1,
            strict=True,
            description="Structs age-based difficulty: the action's difficulty range R (> 1). "
            "The required zeros fall from 64 as blocks pass: 64 - int(log10(age)/log10(R)*63). "
            "Needs current_block_height (or the server's BLOCK_HEIGHT_URL). Example: 1800.",
        ),
    ] = None
    current_block_height: Annotated[
        int | None,
        Field(
            ge=0,
            strict=True,
            description="The chain's current block height, for age-based difficulty. Later "
            "heights are extrapolated at the server's block time. Example: 712100.",
        ),
    ] = None

    @model_validator(mode="after")
    def _one_message_one_difficulty(self) -> Self:
        self.message  # noqa: B018  # raises when neither or both forms are given
        check_difficulty_choice(self.difficulty, self.difficulty_range, self.block_start)
        return self

    @property
    def message(self) -> str:
        """The text hashed before the nonce."""
        return message_prefix(
            self.prefix, self.action_type, self.entity_id, self.block_start, self.target_id
        )


class StartArguments(ProofArguments):
    """A proof to find, and how to run the job that finds it."""

    max_iterations: Annotated[
        int | None,
        Field(
            ge=1,
            strict=True,
            description="Give up (status failed) after this many hashes. Default: no limit.",
        ),
    ] = None
    priority: Annotated[
        PriorityName,
        Field(description="Which jobs the workers serve first when several run at once."),
    ] = "normal"
    timeout_seconds: Annotated[
        float | None,
        Field(
            gt=0,
            strict=True,
            description="Fail the job if it has hashed this many seconds without a proof "
            "(time spent queued, waiting or paused does not count). Default: no limit.",
        ),
    ] = None
    player_id: Annotated[
        str | None,
        Field(
            max_length=256,
            description="Optional: whose job this is (kept as metadata, shown by list_jobs).",
        ),
    ] = None
    label: Annotated[
        str | None,
        Field(
            max_length=256,
            description="Optional free text to recognise the job by in list_jobs.",
        ),
    ] = None
    tags: Annotated[
        list[Tag],
        Field(
            max_length=MAX_TAGS,
            description="Optional labels to find the job by (list_jobs tags=...), at most 16, "
            "each 1-64 of A-Z a-z 0-9 _ . : -. Example: ['player:alice', 'build'].",
        ),
    ] = []
    depends_on: Annotated[
        list[JobId],
        Field(
            max_length=32,
            description="Optional: job_ids (at most 32) that must complete first. The job "
            "stays queued (blocked_by lists the unfinished ones) and fails if one of them "
            "fails or is cancelled.",
        ),
    ] = []
    max_retries: Annotated[
        int,
        Field(
            ge=0,
            le=10,
            strict=True,
            description="Run a failed attempt again, from where it stopped, up to this many "
            "times (0-10, default 0) when it failed for a reason outside the job: the block "
            "height source gone, a store or internal error. Not for max_iterations, "
            "timeout_seconds or a cancel.",
        ),
    ] = 0
    retry_delay_seconds: Annotated[
        float,
        Field(
            ge=0, le=3600, strict=True, description="Seconds before a retry (0-3600, default 5)."
        ),
    ] = 5.0

    def spec(self) -> JobSpec:
        return JobSpec(
            prefix=self.message,
            difficulty=self.difficulty,
            difficulty_range=self.difficulty_range,
            block_start=self.block_start,
            current_block_height=self.current_block_height,
            action_type=self.action_type,
            entity_id=self.entity_id,
            target_id=self.target_id,
            max_iterations=self.max_iterations,
            priority=self.priority,
            timeout_seconds=self.timeout_seconds,
            player_id=self.player_id,
            label=self.label,
            depends_on=tuple(dict.fromkeys(self.depends_on)),
            max_retries=self.max_retries,
            retry_delay_seconds=self.retry_delay_seconds,
            tags=tuple(dict.fromkeys(self.tags)),
        )


class VerifyArguments(ProofArguments):
    """A proof to check: the message and difficulty, and the nonce (and hash) found."""

    nonce: Annotated[
        str,
        Field(
            max_length=64,
            description="The nonce to check, as a decimal string without sign or leading "
            "zeros. Example: '554171'.",
        ),
    ]
    age: Annotated[
        int | None,
        Field(
            ge=0,
            strict=True,
            description="Age-based check: blocks since block_start. Or give current_block_height.",
        ),
    ] = None
    hash: Annotated[
        str | None,
        Field(
            max_length=64,
            description="Optional: the hash you were given, to check it matches the recomputed "
            "one (64 hex characters).",
        ),
    ] = None

    @model_validator(mode="after")
    def _nonce_and_age(self) -> Self:
        try:
            parse_nonce(self.nonce)
        except ValueError as exc:
            raise ValueError(f"nonce: {exc}") from None
        if self.difficulty_range is not None and self.age is None:
            if self.current_block_height is None:
                raise ValueError("an age-based check needs age or current_block_height")
            assert self.block_start is not None
            if self.current_block_height < self.block_start:
                raise ValueError("current_block_height is before block_start")
        return self

    @property
    def required(self) -> int:
        """The difficulty the nonce must meet."""
        if self.difficulty is not None:
            return self.difficulty
        assert self.block_start is not None and self.difficulty_range is not None
        age = self.age
        if age is None:
            assert self.current_block_height is not None
            age = self.current_block_height - self.block_start
        return age_difficulty(age, self.difficulty_range)


M = TypeVar("M", bound=BaseModel)


def describe_errors(exc: ValidationError, where: str = "") -> str:
    """One line per error: the field (with `where` before it) and what is wrong."""
    lines = []
    for error in exc.errors():
        path = where + ".".join(str(part) for part in error["loc"])
        message = error["msg"].removeprefix("Value error, ")
        if "input" in error and error["type"] not in ("missing", "value_error"):
            message += f" (got {error['input']!r:.60})"
        lines.append(f"{path}: {message}" if path else message)
    return "; ".join(lines)


def parse(model: type[M], values: dict[str, Any], where: str = "") -> M:
    """Validate arguments; `JobInputError` naming the field(s) and what is wrong."""
    try:
        return model.model_validate(values)
    except ValidationError as exc:
        raise JobInputError(describe_errors(exc, where)) from None


def flat_tool(
    model: type[M], *, context: type | None = None
) -> Callable[[Callable[..., Awaitable[Any]]], Callable[..., Awaitable[Any]]]:
    """Turn `async def tool(args: Model[, ctx])` into a function of the model's fields, so an
    MCP client sees (and the SDK validates) a flat argument list built from one model."""

    def decorate(fn: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
        parameters = [_parameter(name, field) for name, field in model.model_fields.items()]
        annotations = {p.name: p.annotation for p in parameters}
        if context is not None:
            parameters.append(
                inspect.Parameter("ctx", inspect.Parameter.KEYWORD_ONLY, annotation=context)
            )
            annotations["ctx"] = context
        returns = typing.get_type_hints(fn, include_extras=True).get("return", Any)

        async def tool(**kwargs: Any) -> Any:
            ctx = kwargs.pop("ctx", None)
            try:
                args = parse(model, kwargs)
            except JobInputError as exc:
                raise ToolError(str(exc)) from None
            return await (fn(args, ctx) if context is not None else fn(args))

        tool.__name__, tool.__doc__ = fn.__name__, fn.__doc__
        tool.__signature__ = inspect.Signature(parameters, return_annotation=returns)  # type: ignore[attr-defined]
        tool.__annotations__ = {**annotations, "return": returns}
        return tool

    return decorate


def _parameter(name: str, field: Any) -> inspect.Parameter:
    annotation = Annotated[
        (field.annotation, *field.metadata, Field(description=field.description))
    ]
    default = (
        inspect.Parameter.empty
        if field.is_required()
        else field.get_default(call_default_factory=True)
    )
    return inspect.Parameter(
        name, inspect.Parameter.KEYWORD_ONLY, annotation=annotation, default=default
    )


__all__ = [
    "JOB_ID_PATTERN",
    "JobId",
    "JobIdArgument",
    "JobInputError",
    "ProofArguments",
    "StartArguments",
    "Tag",
    "VerifyArguments",
    "describe_errors",
    "flat_tool",
    "parse",
]
