"""MCP Tasks, end to end: the real server, the SDK client, stdio and Streamable HTTP, both
protocol versions (2025-11-25 core tasks, the 2026-07-28 extension), restarts and a second
instance on the same store."""

from __future__ import annotations

import hashlib
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client, MCPError
from mcp_types import (
    INVALID_PARAMS,
    METHOD_NOT_FOUND,
    MISSING_REQUIRED_CLIENT_CAPABILITY,
    GetTaskPayloadRequest,
    GetTaskPayloadRequestParams,
)
from pydantic import TypeAdapter

from pow_mcp.server.tasks import board as board_module
from pow_mcp.server.tasks.board import V2025, V2026, TaskBoard, TaskView
from pow_mcp.store import JobStatus
from tests.mcp_helpers import call, connect, http_server, server_params
from tests.store_helpers import finished, make_record
from tests.task_client import (
    EXTENSION,
    StatusWatch,
    TasksExtension,
    check_output,
    legacy_rpc,
    task_cancel,
    task_get,
    task_update,
)
from tests.test_manager import manager

LONG = {"prefix": "never-", "difficulty": 12}  # hours of hashing: still running when asked
ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")


def verified(proof: dict[str, Any], prefix: str) -> bool:
    digest = hashlib.sha256(f"{prefix}{proof['nonce']}".encode()).hexdigest()
    return bool(digest == proof["hash"] and digest.startswith("0" * proof["difficulty"]))


async def start_task(
    client: Client, arguments: dict[str, Any], ttl: int | None = None, tool: str = ""
) -> dict[str, Any]:
    """A task-augmented tools/call (2025-11-25); the Task it answers."""
    task: dict[str, Any] = {} if ttl is None else {"ttl": ttl}
    params = {"name": tool or "start_proof_of_work", "arguments": arguments, "task": task}
    created = await legacy_rpc(client, "tools/call", params)
    assert set(created) == {"task", "_meta"}, created
    return dict(created["task"])


async def rpc_error(client: Client, method: str, params: dict[str, Any]) -> MCPError:
    with pytest.raises(MCPError) as caught:
        await legacy_rpc(client, method, params)
    return caught.value


# -- 2025-11-25 ------------------------------------------------------------------------------


async def test_a_2025_task_runs_a_job_and_hands_back_its_proof(tmp_path: Path) -> None:
    watch = StatusWatch()
    async with Client(server_params(tmp_path), mode="legacy", extensions=[watch]) as client:
        assert client.protocol_version == V2025
        capabilities = client.session.server_capabilities
        assert capabilities is not None and capabilities.tasks is not None
        assert capabilities.tasks.requests is not None and capabilities.tasks.requests.tools
        execution = {t.name: t.execution for t in (await client.list_tools()).tools}
        supports = {name for name, e in execution.items() if e and e.task_support == "optional"}
        assert supports == {"start_proof_of_work", "start_proof_of_work_batch"}

        task = await start_task(client, {"prefix": "task-", "difficulty": 4}, ttl=600_000)
        assert re.fullmatch(r"pow_\d+_[0-9a-z]{10}", task["taskId"])
        assert task["status"] == "working" and task["ttl"] >= 600_000
        assert 500 <= task["pollInterval"] <= 30_000
        assert ISO.match(task["createdAt"]) and ISO.match(task["lastUpdatedAt"])

        got = await legacy_rpc(client, "tasks/get", {"taskId": task["taskId"]})
        assert got["taskId"] == task["taskId"] and got["status"] in ("working", "completed")

        result = await legacy_rpc(client, "tasks/result", {"taskId": task["taskId"]})
        related = result["_meta"]["io.modelcontextprotocol/related-task"]
        assert related == {"taskId": task["taskId"]}
        assert result.get("isError") is not True and "resultType" not in result
        answer = result["structuredContent"]
        await check_output(client, "start_proof_of_work", answer)
        assert answer["status"] == "completed" and answer["job_id"] == task["taskId"]
        proof = answer["job"]["result"]["proof_of_work"]
        assert verified(proof, "task-")
        assert proof["nonce"] in result["content"][0]["text"]

        with anyio.fail_after(30):
            ended = await watch.wait_for(task["taskId"], "completed")
        assert ended.status_message is not None and proof["nonce"] in ended.status_message
        done = await legacy_rpc(client, "tasks/get", {"taskId": task["taskId"]})
        assert done["status"] == "completed" and "pollInterval" not in done


async def test_2025_cancel_errors_and_plain_calls(tmp_path: Path) -> None:
    async with Client(server_params(tmp_path), mode="legacy") as client:
        task = await start_task(client, LONG)
        running = await legacy_rpc(client, "tasks/get", {"taskId": task["taskId"]})
        assert running["status"] == "working" and running["statusMessage"]

        cancelled = await legacy_rpc(client, "tasks/cancel", {"taskId": task["taskId"]})
        assert cancelled["status"] == "cancelled"
        again = await rpc_error(client, "tasks/cancel", {"taskId": task["taskId"]})
        assert again.error.code == INVALID_PARAMS and "ended (cancelled)" in again.error.message
        result = await legacy_rpc(client, "tasks/result", {"taskId": task["taskId"]})
        assert result["isError"] is True and result["structuredContent"]["status"] == "cancelled"
        record = await call(client, "query_proof_of_work_status", job_id=task["taskId"])
        assert record["status"] == "cancelled"

        for method in ("tasks/get", "tasks/result", "tasks/cancel"):
            unknown = await rpc_error(client, method, {"taskId": "pow_1_nosuchtask"})
            assert unknown.error.code == INVALID_PARAMS and "no task" in unknown.error.message

        before = (await call(client, "list_jobs"))["total"]
        forbidden = await rpc_error(
            client,
            "tools/call",
            {"name": "wait_for_job", "arguments": {"job_id": task["taskId"]}, "task": {}},
        )
        assert (
            forbidden.error.code == METHOD_NOT_FOUND and "without `task`" in forbidden.error.message
        )
        bad_ttl = await rpc_error(
            client,
            "tools/call",
            {"name": "start_proof_of_work", "arguments": LONG, "task": {"ttl": -5}},
        )
        assert bad_ttl.error.code == INVALID_PARAMS and "ttl" in bad_ttl.error.message
        bad_arguments = await legacy_rpc(
            client,
            "tools/call",
            {"name": "start_proof_of_work", "arguments": {"prefix": "x-"}, "task": {}},
        )
        assert bad_arguments["isError"] is True  # the tool's own error, and no task
        assert (await call(client, "list_jobs"))["total"] == before

        plain = await call(client, "start_proof_of_work", prefix="plain-", difficulty=2)
        assert "job" not in plain or plain["job"] is None
        not_a_task = await rpc_error(client, "tasks/get", {"taskId": plain["job_id"]})
        assert not_a_task.error.code == INVALID_PARAMS


async def test_tasks_created_in_the_same_microsecond_are_listed_once_each(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Instances that share a store can create tasks in the same microsecond: a page may end
    # among them, and the next must go on after the last one listed, not skip the rest.
    monkeypatch.setattr(board_module, "LIST_PAGE", 3)
    same = datetime(2026, 11, 28, 12, 0, 0, 123456, tzinfo=UTC)
    tied = [make_record(created=same, job_id=f"pow_1_tie{n:06d}") for n in range(7)]
    older = [make_record(created=same - timedelta(seconds=n + 1)) for n in range(2)]
    async with manager(tmp_path) as m:
        await m.store.create([r.model_copy(update={"task_id": r.job_id}) for r in [*tied, *older]])
        board = TaskBoard(m)
        listed: list[str] = []
        views, cursor = await board.page(None)
        listed += [v.task_id for v in views]
        while cursor is not None:
            views, cursor = await board.page(cursor)
            assert views
            listed += [v.task_id for v in views]
    expected = sorted((r.job_id for r in tied), reverse=True) + [r.job_id for r in older]
    assert listed == expected


async def test_2025_tasks_list_pages_through_every_task_and_a_batch_is_one(
    tmp_path: Path,
) -> None:
    async with Client(server_params(tmp_path), mode="legacy") as client:
        created = [
            (await start_task(client, {"prefix": f"list-{n}-", "difficulty": 1}))["taskId"]
            for n in range(51)
        ]
        batch = await start_task(
            client,
            {"jobs": [{"prefix": "b1-", "difficulty": 2}, {"prefix": "b2-", "difficulty": 2}]},
            tool="start_proof_of_work_batch",
        )
        assert batch["taskId"].startswith("batch_")
        await call(client, "start_proof_of_work", prefix="plain-", difficulty=1)

        first = await legacy_rpc(client, "tasks/list", {})
        assert len(first["tasks"]) == 50 and "nextCursor" in first
        second = await legacy_rpc(client, "tasks/list", {"cursor": first["nextCursor"]})
        assert "nextCursor" not in second
        listed = [t["taskId"] for t in first["tasks"] + second["tasks"]]
        assert listed == [batch["taskId"], *reversed(created)]  # newest first, each once
        stamps = [datetime.fromisoformat(t["createdAt"]) for t in first["tasks"]]
        assert stamps == sorted(stamps, reverse=True)
        bad = await rpc_error(client, "tasks/list", {"cursor": "not a cursor"})
        assert bad.error.code == INVALID_PARAMS

        result = await legacy_rpc(client, "tasks/result", {"taskId": batch["taskId"]})
        answer = result["structuredContent"]
        await check_output(client, "start_proof_of_work_batch", answer)
        assert answer["batch_id"] == batch["taskId"] and answer["statuses"] == ["completed"] * 2
        for record, prefix in zip(answer["jobs"], ["b1-", "b2-"], strict=True):
            assert verified(record["result"]["proof_of_work"], prefix)


# -- 2026-07-28 ------------------------------------------------------------------------------


async def test_a_2026_client_that_declares_tasks_gets_one_and_others_do_not(
    tmp_path: Path,
) -> None:
    tasks = TasksExtension()
    async with Client(server_params(tmp_path), extensions=[tasks]) as client:
        assert client.protocol_version == V2026
        capabilities = client.session.server_capabilities
        assert capabilities is not None and capabilities.extensions == {EXTENSION: {}}
        result = await client.call_tool("start_proof_of_work", {"prefix": "t26-", "difficulty": 4})
        assert result.is_error is not True and result.structured_content is not None
        await check_output(client, "start_proof_of_work", result.structured_content)
        (created,) = tasks.created
        assert created.task_id == result.structured_content["job_id"]
        assert created.ttl_ms is not None and created.poll_interval_ms is not None
        assert tasks.polls[-1] == "completed"
        assert verified(result.structured_content["job"]["result"]["proof_of_work"], "t26-")
        assert (await task_update(client, created.task_id))["resultType"] == "complete"
        with pytest.raises(MCPError) as unknown:
            await task_get(client, "pow_1_nosuchtask")
        assert unknown.value.error.code == INVALID_PARAMS

    async with connect(tmp_path) as plain:  # the same server data, no extension declared
        capabilities = plain.session.server_capabilities
        assert capabilities is not None and not capabilities.extensions
        answer = await call(plain, "start_proof_of_work", prefix="p26-", difficulty=2)
        assert answer["status"] in ("queued", "running", "completed")
        with pytest.raises(MCPError) as missing:
            await task_get(plain, created.task_id)
        assert missing.value.error.code == MISSING_REQUIRED_CLIENT_CAPABILITY
        assert missing.value.error.data == {"requiredCapabilities": {"extensions": {EXTENSION: {}}}}
        with pytest.raises(MCPError) as legacy_only:
            request = GetTaskPayloadRequest(params=GetTaskPayloadRequestParams(task_id="x"))
            await plain.session.send_request(request, TypeAdapter(dict[str, Any]))
        assert legacy_only.value.error.code == METHOD_NOT_FOUND


async def test_2026_a_failed_job_is_a_completed_task_with_an_error_result(tmp_path: Path) -> None:
    tasks = TasksExtension()
    async with Client(server_params(tmp_path), extensions=[tasks]) as client:
        arguments = {"prefix": "fail-", "difficulty": 9, "max_iterations": 1000}
        result = await client.call_tool("start_proof_of_work", arguments)
        assert result.is_error is True and result.structured_content is not None
        assert result.structured_content["status"] == "failed"
        assert "no proof within 1000 hashes" in result.structured_content["job"]["error"]
        task = await task_get(client, tasks.created[0].task_id)
        assert task["status"] == "completed" and task["result"]["isError"] is True


async def test_2026_tasks_get_while_running_and_tasks_cancel(tmp_path: Path) -> None:
    tasks = TasksExtension()
    async with Client(server_params(tmp_path), extensions=[tasks]) as client:
        async with anyio.create_task_group() as tg:
            tg.start_soon(client.call_tool, "start_proof_of_work", LONG)
            with anyio.fail_after(30):
                await tasks.first.wait()
            task_id = tasks.created[0].task_id
            running = await task_get(client, task_id)
            assert running["status"] == "working" and "result" not in running
            acknowledged = await task_cancel(client, task_id)
            assert set(acknowledged) <= {"resultType", "_meta"}
            tg.cancel_scope.cancel()  # a client that cancels stops polling (the spec allows)
        with anyio.fail_after(30):
            record = await call(client, "wait_for_job", job_id=task_id, timeout_seconds=20)
        assert record["status"] == "cancelled"
        assert (await task_get(client, task_id))["status"] == "cancelled"


# -- transports, restarts, instances -----------------------------------------------------------


async def test_tasks_over_streamable_http_in_both_versions(tmp_path: Path) -> None:
    with http_server(tmp_path) as url:
        async with Client(url, mode="legacy") as legacy:
            task = await start_task(legacy, {"prefix": "h25-", "difficulty": 3})
            result = await legacy_rpc(legacy, "tasks/result", {"taskId": task["taskId"]})
            assert verified(result["structuredContent"]["job"]["result"]["proof_of_work"], "h25-")
        tasks = TasksExtension()
        async with Client(url, extensions=[tasks]) as modern:
            assert modern.protocol_version == V2026
            answer = await modern.call_tool(
                "start_proof_of_work", {"prefix": "h26-", "difficulty": 3}
            )
            assert answer.structured_content is not None and tasks.created
            assert verified(answer.structured_content["job"]["result"]["proof_of_work"], "h26-")
            got = await task_get(modern, task["taskId"])  # the 2025 task, seen from 2026
            assert got["status"] == "completed"


@pytest.mark.parametrize("database", ["json", "sqlite"])
async def test_a_task_outlives_a_restart(tmp_path: Path, database: str) -> None:
    env = {"JOBS_DATABASE_URL": "sqlite:///jobs.db"} if database == "sqlite" else {}
    async with Client(server_params(tmp_path, **env), mode="legacy") as client:
        done = await start_task(client, {"prefix": "before-", "difficulty": 3})
        await legacy_rpc(client, "tasks/result", {"taskId": done["taskId"]})
        cut = await start_task(client, LONG)
    async with Client(server_params(tmp_path, **env), mode="legacy") as client:
        got = await legacy_rpc(client, "tasks/get", {"taskId": done["taskId"]})
        assert got["status"] == "completed"
        result = await legacy_rpc(client, "tasks/result", {"taskId": done["taskId"]})
        assert verified(result["structuredContent"]["job"]["result"]["proof_of_work"], "before-")
        interrupted = await legacy_rpc(client, "tasks/get", {"taskId": cut["taskId"]})
        assert interrupted["status"] == "failed" and "interrupted" in interrupted["statusMessage"]
        listed = await legacy_rpc(client, "tasks/list", {})
        assert [t["taskId"] for t in listed["tasks"]] == [cut["taskId"], done["taskId"]]


async def test_a_second_instance_answers_and_cancels_the_first_ones_task(
    tmp_path: Path, store_env: dict[str, str]
) -> None:
    first = Client(server_params(tmp_path, **store_env), mode="legacy")
    second = Client(server_params(tmp_path, **store_env), mode="legacy")
    async with first as a, second as b:
        long = await start_task(a, LONG)
        seen = await legacy_rpc(b, "tasks/get", {"taskId": long["taskId"]})
        assert seen["status"] == "working"
        cancelled = await legacy_rpc(b, "tasks/cancel", {"taskId": long["taskId"]})
        assert cancelled["status"] == "cancelled"
        with anyio.fail_after(30):
            record = await call(a, "wait_for_job", job_id=long["taskId"], timeout_seconds=20)
        assert record["status"] == "cancelled"

        quick = await start_task(a, {"prefix": "shared-", "difficulty": 3})
        result = await legacy_rpc(b, "tasks/result", {"taskId": quick["taskId"]})
        assert verified(result["structuredContent"]["job"]["result"]["proof_of_work"], "shared-")


async def test_a_ttl_keeps_the_task_past_the_retention_period(tmp_path: Path) -> None:
    async with Client(server_params(tmp_path), mode="legacy") as client:
        task = await start_task(client, {"prefix": "kept-", "difficulty": 2}, ttl=3_600_000)
        await legacy_rpc(client, "tasks/result", {"taskId": task["taskId"]})
        plain = await call(client, "start_proof_of_work", prefix="gone-", difficulty=2)
        await call(client, "wait_for_job", job_id=plain["job_id"])
        removed = await call(client, "cleanup_jobs", max_age_seconds=0)
        assert plain["job_id"] in removed["job_ids"] and task["taskId"] not in removed["job_ids"]
        kept = await legacy_rpc(client, "tasks/get", {"taskId": task["taskId"]})
        assert kept["status"] == "completed" and kept["ttl"] >= 3_600_000


# -- the mapping, without a server ------------------------------------------------------------


@pytest.mark.parametrize(
    ("statuses", "v2025", "v2026"),
    [
        ([JobStatus.QUEUED], "working", "working"),
        ([JobStatus.WAITING], "working", "working"),
        ([JobStatus.PAUSED], "working", "working"),
        ([JobStatus.COMPLETED], "completed", "completed"),
        ([JobStatus.FAILED], "failed", "completed"),
        ([JobStatus.CANCELLED], "cancelled", "cancelled"),
        ([JobStatus.COMPLETED, JobStatus.RUNNING], "working", "working"),
        ([JobStatus.COMPLETED, JobStatus.FAILED], "failed", "completed"),
        ([JobStatus.FAILED, JobStatus.CANCELLED], "cancelled", "cancelled"),
    ],
)
def test_job_statuses_map_to_task_statuses(
    statuses: list[JobStatus], v2025: str, v2026: str
) -> None:
    records = []
    for status in statuses:
        record = make_record(JobStatus.RUNNING if status is JobStatus.RUNNING else status)
        records.append(finished(record, status) if status in _ENDED else record)
    view = TaskView("batch_1_x", records, ttl_ms=1000, poll_ms=500)
    assert view.status(V2025) == v2025 and view.status(V2026) == v2026
    wire = view.wire(V2026)
    assert wire["status"] == v2026 and "ttlMs" in wire and "ttl" not in wire
    if len(records) > 1:
        assert wire["statusMessage"].startswith(f"{sum(s in _ENDED for s in statuses)} of")


_ENDED = {JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED}
