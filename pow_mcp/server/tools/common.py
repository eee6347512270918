"""What every tool shares: annotations, answers, errors, and the words an LLM reads."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from mcp.server.mcpserver.exceptions import ToolError
from mcp_types import CallToolResult, TextContent, ToolAnnotations
from pydantic import BaseModel

from pow_mcp.server.jobs.manager import UnknownJob
from pow_mcp.server.jobs.spec import JobInputError
from pow_mcp.server.schemas import JobAnswer
from pow_mcp.store import FutureRecordError, JobRecord, JobStatus, StoreError


def hints(*, read_only: bool, destructive: bool, idempotent: bool) -> ToolAnnotations:
    """Every hint set: one left out means the protocol's default (destructive, not idempotent).

    No tool reaches outside this server (BLOCK_HEIGHT_URL is the operator's, read-only).
    """
    return ToolAnnotations(
        read_only_hint=read_only,
        destructive_hint=destructive,
        idempotent_hint=idempotent,
        open_world_hint=False,
    )


def answer(model: BaseModel, text: str) -> CallToolResult:
    # The full records of a task's result (`job`, `jobs`) are left out of plain answers.
    unset = {name for name in ("job", "jobs") if getattr(model, name, True) is None}
    return CallToolResult(
        content=[TextContent(type="text", text=text)],
        structured_content=model.model_dump(mode="json", exclude=unset),
    )


@contextlib.contextmanager
def tool_errors(job_id: str | None = None, failed: str = "the request failed") -> Iterator[None]:
    """Turn what the manager and store raise into tool errors an LLM can act on."""
    try:
        yield
    except UnknownJob as exc:
        raise unknown(str(exc.args[0]) if exc.args else job_id or "?") from None
    except JobInputError as exc:
        raise ToolError(str(exc)) from None
    except FutureRecordError as exc:
        raise ToolError(
            f"job {job_id} was written by a newer pow-mcp ({exc}); this server cannot show or "
            "change it"
        ) from None
    except StoreError as exc:
        raise ToolError(
            f"{failed}: {exc}. Nothing was changed; check the job store (its disk, or its "
            "database), then try again"
        ) from None


def unknown(job_id: str) -> ToolError:
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
    if record.status is JobStatus.PAUSED:
        return (
            f"{head} after {record.progress.hashes:,} hashes (best {record.progress.best_zeros} "
            "zeros); resume_job continues from there."
        )
    if record.status is JobStatus.QUEUED and record.blocked_by:
        return f"{head}, waiting for {', '.join(record.blocked_by)} to complete first."
    if record.status is JobStatus.WAITING and record.waiting_info:
        w = record.waiting_info
        if w.plan is not None:
            return (
                f"{head}: difficulty is {w.current_difficulty} at age {w.current_age}; "
                f"{w.note}. Call wait_for_job again later."
            )
        return (
            f"{head}: difficulty is {w.current_difficulty} at age {w.current_age}; hashing "
            f"starts at {w.start_difficulty}, in about {w.blocks_remaining} blocks. "
            "Call wait_for_job again later."
        )
    p = record.progress
    eta = f", about {p.eta_seconds:.0f} s to go" if p.eta_seconds is not None else ""
    note = f" Note: {p.note}." if p.note else ""
    return (
        f"{head}: {p.hashes:,} hashes at {p.hashrate / 1e6:.2f} M/s, best {p.best_zeros} "
        f"zeros{eta}.{note} Call wait_for_job again to keep waiting."
    )


def duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.3g} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 86400 * 730:
        return f"{seconds / 3600:.0f} h"
    return f"{seconds / 31_557_600:.2g} years"


def job_answer(record: JobRecord, timed_out: bool | None = None) -> CallToolResult:
    text = describe(record)
    if timed_out:
        text = "Still not finished when the wait ended. " + text
    return answer(as_job_answer(record, timed_out), text)


def as_job_answer(record: JobRecord, timed_out: bool | None = None) -> JobAnswer:
    return JobAnswer.model_validate({**record.model_dump(), "timed_out": timed_out})


def compact_schema(schema: Any) -> Any:
    """The same JSON schema, cheaper to check: enums defined once in `$defs` are written in
    place, and `anyOf: [{type: T, ...}, {type: null}]` becomes `type: [T, "null"]`. What it
    accepts is unchanged; validators (an MCP client checks every structured answer against
    the tool's output schema) do far less work per field."""
    if isinstance(schema, dict) and "$defs" in schema:
        defs = schema["$defs"]
        enums = {f"#/$defs/{name}": d for name, d in defs.items() if set(d) <= _ENUM_KEYS}
        schema = _inline(schema, enums)
        kept = {n: d for n, d in schema["$defs"].items() if f"#/$defs/{n}" not in enums}
        schema = {k: v for k, v in schema.items() if k != "$defs"}
        if kept:
            schema["$defs"] = kept
    return _compact(schema)


_ENUM_KEYS = {"enum", "type", "title", "description"}


def _inline(schema: Any, enums: dict[str, Any]) -> Any:
    if isinstance(schema, list):
        return [_inline(item, enums) for item in schema]
    if not isinstance(schema, dict):
        return schema
    if schema.get("$ref") in enums:
        return {**enums[schema["$ref"]], **{k: v for k, v in schema.items() if k != "$ref"}}
    return {key: _inline(value, enums) for key, value in schema.items()}


def _compact(schema: Any) -> Any:
    if isinstance(schema, list):
        return [_compact(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    schema = {key: _compact(value) for key, value in schema.items()}
    options = schema.get("anyOf")
    if isinstance(options, list) and len(options) == 2 and {"type": "null"} in options:
        other = next(o for o in options if o != {"type": "null"})
        kind = other.get("type")
        plain = not {"anyOf", "oneOf", "allOf", "$ref", "const"} & set(other)
        if isinstance(kind, str) and kind != "null" and plain:
            del schema["anyOf"]
            schema.update({**other, "type": [kind, "null"]})
            if "enum" in other:
                schema["enum"] = [*other["enum"], None]
    return schema
