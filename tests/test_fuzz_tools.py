"""Fuzzed tool calls against a live server, over stdio and over HTTP, with the SDK client.

Arguments come from each tool's published input schema (tests/fuzz_schema.py): valid ones,
and ones with a single field made invalid. Every call must be answered within its bound;
an invalid one must be a tool error (`isError`) that names the field, and must leave the
stored jobs as they were; the server must live on.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from anyio.from_thread import BlockingPortal, start_blocking_portal
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mcp import Client
from mcp_types import CallToolResult

from tests.fuzz_schema import one_field_wrong, valid
from tests.mcp_helpers import connect, http_server, text_of

CALL_SECONDS = 30.0  # the longest any call here may take (waits are capped at 1 s below)
WAIT_TOOLS = ("wait_for_job", "wait_for_jobs")
# Statuses a job reaches by itself (hashing on); any other move was made by a call.
ON_ITS_OWN = {
    ("queued", "running"),
    ("queued", "completed"),
    ("queued", "failed"),
    ("running", "completed"),
    ("running", "failed"),
}


class Session:
    """A connected SDK client driven from synchronous Hypothesis tests."""

    def __init__(self, portal: BlockingPortal, client: Client, data_dir: Path) -> None:
        self.portal, self.client, self.data_dir = portal, client, data_dir
        listed = portal.call(client.list_tools)
        self.schemas: dict[str, dict[str, Any]] = {t.name: t.input_schema for t in listed.tools}

    def call(self, tool: str, arguments: dict[str, Any]) -> CallToolResult:
        async def bounded() -> CallToolResult:
            with anyio.fail_after(CALL_SECONDS):  # no answer in time fails the test
                return await self.client.call_tool(tool, arguments)

        return self.portal.call(bounded)

    def jobs(self) -> dict[str, str]:
        """The stored jobs' statuses, read from the jobs file itself."""
        path = self.data_dir / "jobs.json"
        if not path.exists():
            return {}
        records = json.loads(path.read_text())
        return {job_id: record["status"] for job_id, record in records.items()}


@contextlib.contextmanager
def stdio_session(data_dir: Path) -> Iterator[Session]:
    with (
        start_blocking_portal() as portal,
        portal.wrap_async_context_manager(connect(data_dir)) as client,
    ):
        yield Session(portal, client, data_dir)


@contextlib.contextmanager
def http_session(data_dir: Path) -> Iterator[Session]:
    with (
        http_server(data_dir) as url,
        start_blocking_portal() as portal,
        portal.wrap_async_context_manager(Client(url)) as client,
    ):
        yield Session(portal, client, data_dir)


SESSIONS: dict[str, Callable[[Path], contextlib.AbstractContextManager[Session]]] = {
    "stdio": stdio_session,
    "http": http_session,
}
TRANSPORTS = pytest.mark.parametrize("transport", sorted(SESSIONS))
FUZZ = settings(
    max_examples=settings().max_examples // 4,  # of the profile: ci 25, long 500
    deadline=None,  # each example is a round trip to a server process
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@pytest.fixture
def session(transport: str, tmp_path: Path) -> Iterator[Session]:
    with SESSIONS[transport](tmp_path) as opened:
        yield opened


def bounded_waits(tool: str, arguments: dict[str, Any]) -> dict[str, Any]:
    """A valid wait may last up to 300 s: keep this suite's to one second."""
    if tool in WAIT_TOOLS and isinstance(arguments.get("timeout_seconds"), int | float):
        arguments["timeout_seconds"] = min(arguments["timeout_seconds"], 1)
    return arguments


@TRANSPORTS
def test_valid_arguments_are_answered(session: Session) -> None:
    tools = st.sampled_from(sorted(session.schemas))

    @FUZZ
    @given(st.data())
    def run(data: st.DataObject) -> None:
        tool = data.draw(tools, label="tool")
        arguments = bounded_waits(tool, data.draw(valid(session.schemas[tool]), label="args"))
        result = session.call(tool, arguments)
        if result.is_error:  # valid by the schema, refused by a rule: said in words
            text = text_of(result)
            assert text.strip(), (tool, arguments)
            # the SDK's whole answer to an exception a tool did not turn into words: a crash
            assert text.strip() != f"Error executing tool {tool}", arguments
        else:
            assert result.structured_content is not None, (tool, arguments)

    run()
    assert not session.call("list_jobs", {}).is_error  # the server lives on


def accepted_arguments(job_id: str) -> dict[str, dict[str, Any]]:
    """For each tool, arguments it accepts (`job_id` names a running job)."""
    job = {"prefix": "fuzz-", "difficulty": 64}
    return {
        "start_proof_of_work": job,
        "start_proof_of_work_batch": {"jobs": [job]},
        "query_proof_of_work_status": {"job_id": job_id},
        "wait_for_job": {"job_id": job_id, "timeout_seconds": 0},
        "wait_for_jobs": {"job_ids": [job_id], "timeout_seconds": 0},
        "cancel_job": {"job_id": job_id},
        "pause_job": {"job_id": job_id},
        "resume_job": {"job_id": job_id},
        "list_jobs": {},
        "cleanup_jobs": {},
        "verify_proof_of_work": {"prefix": "fuzz-", "nonce": "1", "difficulty": 1},
    }


@TRANSPORTS
def test_an_invalid_field_is_named_and_changes_nothing(session: Session) -> None:
    started = session.call("start_proof_of_work", {"prefix": "fuzz-", "difficulty": 64})
    assert started.structured_content is not None
    bases = accepted_arguments(started.structured_content["job_id"])
    assert sorted(bases) == sorted(session.schemas)  # a new tool needs its line above
    tools = st.sampled_from(sorted(t for t, s in session.schemas.items() if s.get("properties")))

    @FUZZ
    @given(st.data())
    def run(data: st.DataObject) -> None:
        tool = data.draw(tools, label="tool")
        schema = session.schemas[tool]
        arguments, field = data.draw(one_field_wrong(schema, bases[tool]), label="args")
        before = session.jobs()
        result = session.call(tool, arguments)  # a wait's own timeout is 0, or the bad field
        assert result.is_error, (tool, arguments, result.structured_content)
        assert field in text_of(result), (field, text_of(result))
        after = session.jobs()
        assert after.keys() == before.keys()
        moved = {(before[i], after[i]) for i in before if before[i] != after[i]}
        assert moved <= ON_ITS_OWN, moved

    run()
    assert not session.call("list_jobs", {}).is_error


# -- what the fuzzing found, kept as plain tests ------------------------------------------


@pytest.mark.parametrize(
    ("tool", "arguments", "field"),
    [
        # `false` was read as 0: every finished job removed at once.
        ("cleanup_jobs", {"max_age_seconds": False}, "max_age_seconds"),
        ("wait_for_job", {"job_id": "pow_1_x", "timeout_seconds": True}, "timeout_seconds"),
        ("start_proof_of_work", {"prefix": "p", "difficulty_range": True}, "difficulty_range"),
    ],
)
async def test_a_boolean_is_not_a_number(
    tmp_path: Path, tool: str, arguments: dict[str, Any], field: str
) -> None:
    async with connect(tmp_path) as client:
        done = await client.call_tool("start_proof_of_work", {"prefix": "b-", "difficulty": 1})
        assert done.structured_content is not None
        job_id = done.structured_content["job_id"]
        await client.call_tool("wait_for_job", {"job_id": job_id, "timeout_seconds": 60})
        refused = await client.call_tool(tool, arguments)
        assert refused.is_error and field in text_of(refused)
        kept = await client.call_tool("query_proof_of_work_status", {"job_id": job_id})
        assert not kept.is_error and kept.structured_content is not None
        assert kept.structured_content["status"] == "completed"


async def test_a_creation_time_must_be_text(tmp_path: Path) -> None:
    # A number was read as unix seconds: created_after=0 listed every job without a word.
    async with connect(tmp_path) as client:
        for field in ("created_after", "created_before"):
            refused = await client.call_tool("list_jobs", {field: 0})
            assert refused.is_error and field in text_of(refused)
        listed = await client.call_tool("list_jobs", {"created_after": "2026-01-01T00:00:00Z"})
        assert not listed.is_error
