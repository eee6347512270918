"""The job resources: `pow://jobs` (the list) and `pow://jobs/{job_id}` (one record), their
subscriptions, and completion of the `job_id` in the template.

Subscribing (resources/subscribe on 2025-11-25; a `subscriptions/listen` stream naming
the resource on 2026-07-28) brings `notifications/resources/updated` for that job: at once
when its status changes, and at most once a second while its progress moves.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import anyio
from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ResourceNotFoundError
from mcp.server.session import ServerSession
from mcp.server.subscriptions import ResourceUpdated, SubscriptionBus
from mcp.shared.exceptions import MCPError
from mcp_types import (
    INVALID_PARAMS,
    CompleteRequestParams,
    CompleteResult,
    Completion,
    EmptyResult,
    ResourceTemplateReference,
    SubscribeRequestParams,
    UnsubscribeRequestParams,
)

from pow_mcp.server.jobs.manager import JobManager, UnknownJob
from pow_mcp.server.jobs.waits import first_of
from pow_mcp.server.schemas import summary
from pow_mcp.store import JobQuery, JobStatus, StoreError

log = logging.getLogger(__name__)

JOBS_URI = "pow://jobs"
JOB_URI_PREFIX = "pow://jobs/"
JOB_TEMPLATE = "pow://jobs/{job_id}"
PROGRESS_INTERVAL = 1.0  # seconds between two progress notifications of one job
COMPLETIONS = 100


def job_of(uri: str) -> str | None:
    """The job id in `pow://jobs/{job_id}`, None for any other URI."""
    if not uri.startswith(JOB_URI_PREFIX):
        return None
    job_id = uri.removeprefix(JOB_URI_PREFIX)
    return job_id if job_id and "/" not in job_id else None


class JobFeed:
    """Tells subscribers when a job changed: 2025 sessions directly, 2026 listen streams
    through the SDK's subscription bus (which sends each stream only what it listens to)."""

    def __init__(self, manager: JobManager, bus: SubscriptionBus) -> None:
        self.manager = manager
        self.bus = bus
        self._sessions: dict[str, set[ServerSession]] = {}
        self._listened: Counter[str] = Counter()
        self._seen: dict[str, tuple[JobStatus | None, int]] = {}  # what was last told
        self._told_at: dict[str, float] = {}
        self._wake = anyio.Event()

    def watched(self) -> list[str]:
        return sorted(set(self._sessions) | {j for j, n in self._listened.items() if n > 0})

    async def subscribe(self, session: ServerSession, job_id: str) -> None:
        await self._baseline(job_id)
        self._sessions.setdefault(job_id, set()).add(session)
        self._poke()

    def unsubscribe(self, session: ServerSession, job_id: str) -> None:
        sessions = self._sessions.get(job_id, set())
        sessions.discard(session)
        if not sessions:
            self._sessions.pop(job_id, None)

    async def listen(
        self, job_ids: Iterable[str], call_next: Callable[[], Awaitable[HandlerResult]]
    ) -> HandlerResult:
        """Watch these jobs while a 2026 listen stream (the call) is open."""
        ids = list(dict.fromkeys(job_ids))
        for job_id in ids:
            await self._baseline(job_id)
            self._listened[job_id] += 1
        self._poke()
        try:
            return await call_next()
        finally:
            self._listened.subtract(ids)
            self._listened += Counter()  # drop the zeros

    async def _baseline(self, job_id: str) -> None:
        if job_id not in self._seen:
            self._seen[job_id] = await self._fingerprint(job_id)

    async def _fingerprint(self, job_id: str) -> tuple[JobStatus | None, int]:
        try:
            record = await self.manager.get(job_id)
        except UnknownJob:
            return (None, 0)  # removed (or not there yet): a change when it appears
        return (record.status, record.progress.hashes)

    def _poke(self) -> None:
        self._wake.set()
        self._wake = anyio.Event()

    async def run(self) -> None:
        """Check the watched jobs whenever one may have changed; run it in a task group."""
        while True:
            ids = self.watched()
            change = [*self.manager.waits.change(ids, progress=True), self._wake]
            delay = math.inf
            if ids:
                try:
                    delay = await self._tell(ids)
                except StoreError as exc:
                    self.manager.store.outage.warning(
                        log, "job notifications paused, the store failed: %s", exc
                    )
                    delay = PROGRESS_INTERVAL
            with anyio.move_on_after(delay):
                await first_of(change)

    async def _tell(self, ids: list[str]) -> float:
        """Notify for the jobs that changed; returns how long until held-back progress is due."""
        now = time.monotonic()
        due = math.inf
        for job_id in ids:
            seen = self._seen.get(job_id)
            current = await self._fingerprint(job_id)
            if current == seen:
                continue
            wait = self._told_at.get(job_id, -math.inf) + PROGRESS_INTERVAL - now
            if seen is not None and current[0] == seen[0] and wait > 0:
                due = min(due, wait)  # progress only, and told less than a second ago
                continue
            self._seen[job_id], self._told_at[job_id] = current, now
            await self._send(job_id)
        for job_id in set(self._seen) - set(ids):
            self._seen.pop(job_id)
            self._told_at.pop(job_id, None)
        return due

    async def _send(self, job_id: str) -> None:
        uri = JOB_URI_PREFIX + job_id
        for session in list(self._sessions.get(job_id, ())):
            try:
                await session.send_resource_updated(uri)
            except (anyio.ClosedResourceError, anyio.BrokenResourceError):
                self.unsubscribe(session, job_id)  # that client has gone
        if self._listened[job_id] > 0:
            await self.bus.publish(ResourceUpdated(uri=uri))


def register(mcp: MCPServer, manager: JobManager, feed: JobFeed) -> None:
    # One resource per decorated closure, each a few lines: the list reads best in one place.
    @mcp.resource(
        JOBS_URI,
        name="jobs",
        title="Jobs",
        mime_type="application/json",
        description="All jobs, newest first (first 1000), as JSON.",
    )
    async def jobs_resource() -> str:
        records, total = await manager.find(JobQuery(limit=1000))
        jobs = [summary(r).model_dump(mode="json") for r in records]
        return json.dumps({"jobs": jobs, "total": total})

    @mcp.resource(
        JOB_TEMPLATE,
        name="job",
        title="A job",
        mime_type="application/json",
        description="One job's full record as JSON. Subscribe to it to hear when the job "
        "changes (status at once, progress at most once a second).",
    )
    async def job_resource(job_id: str) -> str:
        try:
            record = await manager.get(job_id)
        except UnknownJob:
            raise ResourceNotFoundError(f"no job with id {job_id!r}") from None
        return record.model_dump_json()

    async def complete(
        ctx: ServerRequestContext[Any, Any], params: CompleteRequestParams
    ) -> CompleteResult:
        """Job ids for the template's `job_id`: those starting with what was typed, newest
        first."""
        ref, argument = params.ref, params.argument
        if not isinstance(ref, ResourceTemplateReference) or ref.uri != JOB_TEMPLATE:
            return CompleteResult(completion=Completion(values=[]))
        if argument.name != "job_id":
            return CompleteResult(completion=Completion(values=[]))
        query = JobQuery(id_prefix=argument.value, limit=COMPLETIONS)
        records, total = await manager.find(query)
        ids = [r.job_id for r in records]
        return CompleteResult(
            completion=Completion(values=ids, total=total, has_more=total > len(ids))
        )

    async def subscribe(
        ctx: ServerRequestContext[Any, Any], params: SubscribeRequestParams
    ) -> EmptyResult:
        job_id = job_of(str(params.uri))
        if job_id is None:
            raise MCPError(INVALID_PARAMS, f"only {JOB_TEMPLATE} can be subscribed to")
        try:
            await manager.get(job_id)
        except UnknownJob:
            raise MCPError(INVALID_PARAMS, f"no job with id {job_id!r}") from None
        await feed.subscribe(ctx.session, job_id)
        return EmptyResult()

    async def unsubscribe(
        ctx: ServerRequestContext[Any, Any], params: UnsubscribeRequestParams
    ) -> EmptyResult:
        job_id = job_of(str(params.uri))
        if job_id is not None:
            feed.unsubscribe(ctx.session, job_id)
        return EmptyResult()

    # Spec methods, which an extension may not bind; MCPServer has no typed decorator for
    # them, so the low-level server takes them. (resources/subscribe is 2025-11-25 only:
    # 2026 clients listen instead.)
    lowlevel = mcp._lowlevel_server
    lowlevel.add_request_handler("completion/complete", CompleteRequestParams, complete)
    lowlevel.add_request_handler("resources/subscribe", SubscribeRequestParams, subscribe)
    lowlevel.add_request_handler("resources/unsubscribe", UnsubscribeRequestParams, unsubscribe)


class ResourceWire:
    """Middleware: 2026 listen streams feed the job feed, and capabilities say only what is
    sent (no list ever changes here; no prompts)."""

    def __init__(self, feed: JobFeed) -> None:
        self.feed = feed

    async def __call__(
        self, ctx: ServerRequestContext[Any, Any], call_next: CallNext
    ) -> HandlerResult:
        if ctx.method == "subscriptions/listen":
            uris = ((ctx.params or {}).get("notifications") or {}).get("resourceSubscriptions")
            ids = [j for u in uris or [] if isinstance(u, str) and (j := job_of(u))]
            return await self.feed.listen(ids, lambda: call_next(ctx))
        result = await call_next(ctx)
        if ctx.method in ("initialize", "server/discover") and isinstance(result, dict):
            capabilities = result.get("capabilities", {})
            capabilities.pop("prompts", None)
            for name in ("tools", "resources"):
                if isinstance(capabilities.get(name), dict):
                    capabilities[name]["listChanged"] = False
        return result
