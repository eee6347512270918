"""The client side of MCP Tasks, as a client that speaks them would do it, on the SDK client.

The SDK client has the 2025-11-25 task types but no task support, and it checks every
`tools/call` answer of that version as a CallToolResult: the task-augmented call and the
tasks/* methods go through its dispatcher as raw JSON-RPC (`legacy_rpc`). On 2026-07-28
the client's own extension mechanism does it: `TasksExtension` declares the extension and
resolves a `resultType: "task"` answer by polling tasks/get, as a real client would.
"""

from __future__ import annotations

from typing import Any, Literal

import anyio
import jsonschema
from mcp import Client
from mcp.client.extension import ClaimContext, ClientExtension, NotificationBinding, ResultClaim
from mcp_types import (
    CallToolResult,
    CancelTaskRequest,
    CancelTaskRequestParams,
    GetTaskRequest,
    GetTaskRequestParams,
    Request,
    RequestParams,
    Result,
    TaskStatusNotificationParams,
    TextContent,
)
from pydantic import TypeAdapter

EXTENSION = "io.modelcontextprotocol/tasks"
_ANY = TypeAdapter(dict[str, Any])


async def legacy_rpc(client: Client, method: str, params: dict[str, Any]) -> dict[str, Any]:
    """One JSON-RPC request on a 2025-11-25 session, its result unchecked by the SDK."""
    result: dict[str, Any] = await client.session._dispatcher.send_raw_request(
        method, params, {"timeout": 120}
    )
    return result


class CreatedTask(Result):
    """2026-07-28: the answer `{resultType: "task", ...Task}`."""

    result_type: Literal["task"] = "task"
    task_id: str
    status: str
    status_message: str | None = None
    created_at: str
    last_updated_at: str
    ttl_ms: int | None = None
    poll_interval_ms: int | None = None


class UpdateParams(RequestParams):
    task_id: str
    input_responses: dict[str, Any] = {}  # noqa: RUF012  # a pydantic default, copied


class UpdateTaskRequest(Request[UpdateParams, Literal["tasks/update"]]):
    method: Literal["tasks/update"] = "tasks/update"
    params: UpdateParams


async def task_get(client: Client, task_id: str) -> dict[str, Any]:
    """tasks/get on a 2026 connection (the SDK stamps this client's capabilities)."""
    request = GetTaskRequest(params=GetTaskRequestParams(task_id=task_id))
    return await client.session.send_request(request, _ANY)


async def task_cancel(client: Client, task_id: str) -> dict[str, Any]:
    request = CancelTaskRequest(params=CancelTaskRequestParams(task_id=task_id))
    return await client.session.send_request(request, _ANY)


async def task_update(client: Client, task_id: str) -> dict[str, Any]:
    request = UpdateTaskRequest(params=UpdateParams(task_id=task_id))
    return await client.session.send_request(request, _ANY)


class TasksExtension(ClientExtension):
    """The 2026-07-28 tasks extension on the client: answers with a task are polled until
    they end. `created` collects the tasks as they are handed out; `polls` every status."""

    identifier = EXTENSION

    def __init__(self) -> None:
        self.created: list[CreatedTask] = []
        self.polls: list[str] = []
        self.first = anyio.Event()

    def claims(self) -> list[ResultClaim[Any]]:
        return [ResultClaim(result_type="task", model=CreatedTask, resolve=self._resolve)]

    async def _resolve(self, task: CreatedTask, ctx: ClaimContext) -> CallToolResult:
        self.created.append(task)
        self.first.set()
        request = GetTaskRequest(params=GetTaskRequestParams(task_id=task.task_id))
        while True:
            got = await ctx.session.send_request(request, _ANY)
            self.polls.append(got["status"])
            if got["status"] == "completed":
                return CallToolResult.model_validate(got["result"])
            if got["status"] != "working":
                text = f"task {got['status']}: {got.get('statusMessage')}"
                return CallToolResult(content=[TextContent(type="text", text=text)], is_error=True)
            await anyio.sleep(got["pollIntervalMs"] / 1000)  # the server's suggested interval


class StatusWatch(ClientExtension):
    """2025-11-25: collects notifications/tasks/status."""

    identifier = EXTENSION

    def __init__(self) -> None:
        self.seen: list[TaskStatusNotificationParams] = []
        self.changed = anyio.Event()

    def notifications(self) -> list[NotificationBinding[Any]]:
        return [
            NotificationBinding(
                method="notifications/tasks/status",
                params_type=TaskStatusNotificationParams,
                handler=self._seen,
            )
        ]

    async def _seen(self, params: TaskStatusNotificationParams) -> None:
        self.seen.append(params)
        self.changed.set()
        self.changed = anyio.Event()

    async def wait_for(self, task_id: str, status: str) -> TaskStatusNotificationParams:
        while True:
            for params in self.seen:
                if params.task_id == task_id and params.status == status:
                    return params
            await self.changed.wait()


async def check_output(client: Client, tool: str, structured: dict[str, Any]) -> None:
    """The structured answer is valid against the tool's declared output schema."""
    tools = {t.name: t for t in (await client.list_tools()).tools}
    schema = tools[tool].output_schema
    assert schema is not None
    jsonschema.validate(structured, schema)
