"""The tasks protocol: the tasks/* methods as an SDK extension, the middleware that turns
task-augmented start calls into tasks, and the capabilities advertised per protocol version."""

import contextlib
import logging
from collections.abc import Iterator
from typing import Any, cast

import anyio
from anyio.abc import TaskGroup
from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.server.extension import Extension, MethodBinding
from mcp.server.session import ServerSession
from mcp.shared.exceptions import MCPError
from mcp_types import (
    CLIENT_CAPABILITIES_META_KEY,
    INTERNAL_ERROR,
    INVALID_PARAMS,
    METHOD_NOT_FOUND,
    MISSING_REQUIRED_CLIENT_CAPABILITY,
    CancelTaskRequestParams,
    GetTaskPayloadRequestParams,
    GetTaskRequestParams,
    PaginatedRequestParams,
    RequestParams,
    TaskStatusNotification,
    TaskStatusNotificationParams,
)
from pydantic import Field

from pow_mcp.server.jobs.spec import TASK_REQUEST, TaskRequest
from pow_mcp.server.tasks.board import (
    V2025,
    V2026,
    ServerStopping,
    TaskBoard,
    TaskNotFound,
    TaskView,
)
from pow_mcp.store import StoreError

log = logging.getLogger(__name__)

EXTENSION = "io.modelcontextprotocol/tasks"
RELATED_TASK = "io.modelcontextprotocol/related-task"
IMMEDIATE_RESPONSE = "io.modelcontextprotocol/model-immediate-response"
TASK_TOOLS = frozenset({"start_proof_of_work", "start_proof_of_work_batch"})
MAX_TTL_SECONDS = 366 * 86400  # a longer ttl is shortened to this (receivers may)


def declares_extension(ctx: ServerRequestContext[Any, Any]) -> bool:
    """Whether this 2026 request's client capabilities name the tasks extension."""
    meta = (ctx.params or {}).get("_meta")
    capabilities = meta.get(CLIENT_CAPABILITIES_META_KEY) if isinstance(meta, dict) else None
    extensions = capabilities.get("extensions") if isinstance(capabilities, dict) else None
    return isinstance(extensions, dict) and EXTENSION in extensions


def _not_found(task_id: str) -> MCPError:
    return MCPError(
        INVALID_PARAMS,
        f"Failed to retrieve task: no task {task_id!r} (unknown, or removed after its ttl "
        "and the retention period)",
    )


def _missing_capability() -> MCPError:
    return MCPError(
        MISSING_REQUIRED_CLIENT_CAPABILITY,
        "Missing required client capability",
        {"requiredCapabilities": {"extensions": {EXTENSION: {}}}},
    )


class UpdateTaskRequestParams(RequestParams):
    """tasks/update (2026-07-28): responses to a task's input requests."""

    task_id: str
    input_responses: dict[str, Any] = Field(default_factory=dict)


class TasksProtocol(Extension):
    """The tasks/* methods (an SDK extension) and the wire rewriting around them (a server
    middleware: `tools/call` answered with a task, capabilities, `execution` on tools)."""

    identifier = EXTENSION

    def __init__(self, board: TaskBoard, task_group: TaskGroup) -> None:
        self.board = board
        self._tg = task_group

    def methods(self) -> list[MethodBinding]:
        both = frozenset({V2025, V2026})
        return [
            MethodBinding("tasks/get", GetTaskRequestParams, self._get, both),
            MethodBinding("tasks/cancel", CancelTaskRequestParams, self._cancel, both),
            MethodBinding(
                "tasks/result", GetTaskPayloadRequestParams, self._result, frozenset({V2025})
            ),
            MethodBinding("tasks/list", PaginatedRequestParams, self._list, frozenset({V2025})),
            MethodBinding(
                "tasks/update", UpdateTaskRequestParams, self._update, frozenset({V2026})
            ),
        ]

    # -- the methods -----------------------------------------------------------------------

    async def _get(
        self, ctx: ServerRequestContext[Any, Any], params: GetTaskRequestParams
    ) -> HandlerResult:
        view = await self._view(ctx, params.task_id)
        if ctx.protocol_version == V2025:
            return view.wire(V2025)
        task = {"resultType": "complete", **view.wire(V2026)}
        if task["status"] == "completed":
            task["result"] = self.board.result(view)
        return task

    async def _result(
        self, ctx: ServerRequestContext[Any, Any], params: GetTaskPayloadRequestParams
    ) -> HandlerResult:
        await self._view(ctx, params.task_id)
        with _store_errors():
            view = await self.board.wait(params.task_id)
        result = self.board.result(view)
        result.pop("resultType", None)  # a 2026 field
        result["_meta"] = {**result.get("_meta", {}), RELATED_TASK: {"taskId": view.task_id}}
        return result

    async def _cancel(
        self, ctx: ServerRequestContext[Any, Any], params: CancelTaskRequestParams
    ) -> HandlerResult:
        view = await self._view(ctx, params.task_id)
        if ctx.protocol_version != V2025:
            with _store_errors():
                await self.board.cancel(view.task_id)
            return {}  # cooperative: an acknowledgement
        if view.terminal:
            raise MCPError(INVALID_PARAMS, f"task {view.task_id} has ended ({view.outcome})")
        with _store_errors():
            view = await self.board.cancel(view.task_id)
        if view.outcome != "cancelled":
            raise MCPError(INVALID_PARAMS, f"task {view.task_id} ended ({view.outcome}) first")
        return view.wire(V2025)

    async def _list(
        self, ctx: ServerRequestContext[Any, Any], params: PaginatedRequestParams
    ) -> HandlerResult:
        with _store_errors():
            views, cursor = await self.board.page(params.cursor)
        page: dict[str, Any] = {"tasks": [v.wire(V2025) for v in views]}
        if cursor is not None:
            page["nextCursor"] = cursor
        return page

    async def _update(
        self, ctx: ServerRequestContext[Any, Any], params: UpdateTaskRequestParams
    ) -> HandlerResult:
        await self._view(ctx, params.task_id)
        return {}  # no task of ours ever asks for input; the responses are ignored

    async def _view(self, ctx: ServerRequestContext[Any, Any], task_id: str) -> TaskView:
        if ctx.protocol_version != V2025 and not declares_extension(ctx):
            raise _missing_capability()
        with _store_errors():
            return await self.board.view(task_id)

    # -- the middleware --------------------------------------------------------------------

    async def middleware(
        self, ctx: ServerRequestContext[Any, Any], call_next: CallNext
    ) -> HandlerResult:
        if ctx.method == "tools/call":
            request = self._task_request(ctx)
            if request is not None:
                return await self._start_task(ctx, call_next, request)
            return await call_next(ctx)
        result = await call_next(ctx)
        if not isinstance(result, dict):
            return result
        if ctx.method == "initialize":
            _advertise_2025(result)
        elif ctx.method == "server/discover":
            _advertise_2026(result, declares_extension(ctx))
        elif ctx.method == "tools/list" and ctx.protocol_version == V2025:
            for tool in result.get("tools", []):
                if tool.get("name") in TASK_TOOLS:
                    tool["execution"] = {"taskSupport": "optional"}
        return result

    def _task_request(self, ctx: ServerRequestContext[Any, Any]) -> TaskRequest | None:
        params = ctx.params or {}
        name = params.get("name")
        if ctx.protocol_version == V2025 and params.get("task") is not None:
            if name not in TASK_TOOLS:
                raise MCPError(
                    METHOD_NOT_FOUND,
                    f"tool {name!r} does not run as a task (execution.taskSupport is "
                    "forbidden): call it without `task`; start_proof_of_work and "
                    "start_proof_of_work_batch can run as tasks",
                )
            return TaskRequest(ttl_seconds=_ttl_seconds(params["task"]))
        if ctx.protocol_version == V2026 and name in TASK_TOOLS and declares_extension(ctx):
            return TaskRequest()
        return None

    async def _start_task(
        self, ctx: ServerRequestContext[Any, Any], call_next: CallNext, request: TaskRequest
    ) -> HandlerResult:
        token = TASK_REQUEST.set(request)
        try:
            result = await call_next(ctx)
        finally:
            TASK_REQUEST.reset(token)
        if not isinstance(result, dict) or result.get("isError"):
            return result  # bad arguments, or not saved: no task, and the tool's error says why
        answer = result.get("structuredContent") or {}
        task_id = str(answer.get("batch_id") or answer.get("job_id"))
        with _store_errors():
            view = await self.board.view(task_id)
        log.info("task %s created (%s)", task_id, ctx.protocol_version)
        if ctx.protocol_version == V2025:
            self._tg.start_soon(self._notify_end, ctx.session, task_id)
            text = " ".join(c.get("text", "") for c in result.get("content", []))
            return {"task": view.wire(V2025), "_meta": {IMMEDIATE_RESPONSE: text}}
        created = {"resultType": "task", **view.wire(V2026)}
        if "_meta" in result:
            created["_meta"] = result["_meta"]  # the serverInfo stamp of 2026
        return created

    async def _notify_end(self, session: ServerSession, task_id: str) -> None:
        """notifications/tasks/status once the task has ended (2025-11-25, optional there)."""
        try:
            view = await self.board.wait(task_id)
            params = TaskStatusNotificationParams.model_validate(view.wire(V2025))
            notification = TaskStatusNotification(params=params)
            # The SDK keeps the task notification out of its typed union (types only).
            await session.send_notification(cast(Any, notification))
        except TaskNotFound:
            pass  # removed meanwhile
        except (StoreError, anyio.ClosedResourceError, anyio.BrokenResourceError) as exc:
            log.debug("task %s: no status notification (%s)", task_id, exc)


def _ttl_seconds(task: object) -> float | None:
    ttl = task.get("ttl") if isinstance(task, dict) else None
    if ttl is None:
        return None
    if isinstance(ttl, bool) or not isinstance(ttl, int) or ttl < 0:
        raise MCPError(INVALID_PARAMS, f"task.ttl must be a whole number of ms >= 0, not {ttl!r}")
    return min(ttl / 1000, MAX_TTL_SECONDS)


@contextlib.contextmanager
def _store_errors() -> Iterator[None]:
    """Store failures and vanished tasks as the protocol's errors."""
    try:
        yield
    except TaskNotFound as exc:
        raise _not_found(str(exc)) from None
    except ServerStopping as exc:
        raise MCPError(
            INTERNAL_ERROR,
            f"the server is stopping before task {exc} ended; ask for its result again once "
            "the server is back (the task lives in the job store)",
        ) from None
    except StoreError as exc:
        raise MCPError(INTERNAL_ERROR, f"the job store failed: {exc}") from None


def _advertise_2025(result: dict[str, Any]) -> None:
    capabilities = result.setdefault("capabilities", {})
    _drop_extension(capabilities)  # 2025's tasks are core, not an extension
    if result.get("protocolVersion") == V2025:
        capabilities["tasks"] = {"list": {}, "cancel": {}, "requests": {"tools": {"call": {}}}}


def _advertise_2026(result: dict[str, Any], declared: bool) -> None:
    if not declared:
        _drop_extension(result.get("capabilities", {}))  # only to clients that declare it


def _drop_extension(capabilities: dict[str, Any]) -> None:
    extensions = capabilities.get("extensions")
    if isinstance(extensions, dict):
        extensions.pop(EXTENSION, None)
        if not extensions:
            del capabilities["extensions"]
