"""The board of MCP tasks: a task's view (status, ttl, poll interval, result) read from the
job store, with waiting, cancelling and listing; nothing about a task lives in memory."""

import base64
import binascii
import contextlib
import logging
import re
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from mcp.shared.exceptions import MCPError
from mcp_types import (
    INVALID_PARAMS,
)

from pow_mcp.server.jobs.manager import JobManager, UnknownJob
from pow_mcp.server.schemas import BatchAnswer
from pow_mcp.server.tools.args import JOB_ID_PATTERN
from pow_mcp.server.tools.common import answer, describe
from pow_mcp.server.tools.jobs import start_answer
from pow_mcp.store import JobQuery, JobRecord, JobStatus
from pow_mcp.store.query import MAX_PAGE

log = logging.getLogger(__name__)

V2025 = "2025-11-25"
V2026 = "2026-07-28"
LIST_PAGE = 50
POLL_MS = (500, 30_000)  # the suggested poll interval: a fifth of the expected time, within


class TaskNotFound(LookupError):
    pass


class ServerStopping(RuntimeError):
    """A task's result was asked for while the server stops: ask again once it is back."""


# -- a task, read from the store --------------------------------------------------------------


@dataclass(frozen=True)
class TaskView:
    """A task as the store has it now: its jobs (one, or the batch in order) and timings."""

    task_id: str
    records: list[JobRecord]
    ttl_ms: int
    poll_ms: int | None

    @property
    def terminal(self) -> bool:
        return all(r.is_terminal for r in self.records)

    @property
    def outcome(self) -> str:
        """working, completed, failed or cancelled: the jobs' state, before any version."""
        if not self.terminal:
            return "working"
        statuses = {r.status for r in self.records}
        if statuses == {JobStatus.COMPLETED}:
            return "completed"
        return "cancelled" if JobStatus.CANCELLED in statuses else "failed"

    def status(self, version: str) -> str:
        # 2026's `failed` is for protocol errors only: a failed job is a completed task
        # whose result is an error result.
        outcome = self.outcome
        return "completed" if outcome == "failed" and version != V2025 else outcome

    @property
    def message(self) -> str:
        if len(self.records) == 1:
            return status_line(self.records[0])
        counts = Counter(r.status for r in self.records)
        parts = ", ".join(f"{counts[s]} {s.value}" for s in JobStatus if counts[s])
        ended = sum(1 for r in self.records if r.is_terminal)
        return f"{ended} of {len(self.records)} jobs ended ({parts})"

    def wire(self, version: str) -> dict[str, Any]:
        """The Task object of `version` (2025: ttl/pollInterval; 2026: ttlMs/pollIntervalMs)."""
        suffix = "" if version == V2025 else "Ms"
        task: dict[str, Any] = {
            "taskId": self.task_id,
            "status": self.status(version),
            "statusMessage": self.message,
            "createdAt": _iso(self.records[0].created_at),
            "lastUpdatedAt": _iso(max(r.updated_at for r in self.records)),
            f"ttl{suffix}": self.ttl_ms,
        }
        if self.poll_ms is not None:
            task[f"pollInterval{suffix}"] = self.poll_ms
        return task


def status_line(record: JobRecord) -> str:
    """One line on a job, for a task's statusMessage."""
    status = record.status.value
    p = record.progress
    proof = record.result.proof_of_work if record.result else None
    if record.status is JobStatus.COMPLETED and proof is not None:
        valid = f", valid from block {record.valid_from_block}" if record.valid_from_block else ""
        return f"completed: nonce {proof.nonce}, hash {proof.hash}{valid}"
    if record.is_terminal:
        return f"{status}: {record.error}" if record.error else status
    if record.status is JobStatus.WAITING and record.waiting_info is not None:
        w = record.waiting_info
        if w.plan is not None:
            return f"waiting: difficulty {w.current_difficulty} now; {w.note}"
        return (
            f"waiting: difficulty {w.current_difficulty} now; hashing starts at "
            f"{w.start_difficulty}, in about {w.blocks_remaining} blocks"
        )
    if record.status is JobStatus.QUEUED:
        return f"queued, after {', '.join(record.blocked_by)}" if record.blocked_by else status
    if record.status is JobStatus.PAUSED:
        return f"paused after {p.hashes:,} hashes; resume_job continues it"
    eta = f", about {p.eta_seconds:.0f} s to go" if p.eta_seconds is not None else ""
    return (
        f"running: {p.hashes:,} hashes at {p.hashrate / 1e6:.2f} M/s, best {p.best_zeros} "
        f"zeros{eta}"
    )


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


class TaskBoard:
    """Tasks as views of the job store: read, wait for, cancel, list, and their results."""

    def __init__(self, manager: JobManager) -> None:
        self.manager = manager

    async def view(self, task_id: str) -> TaskView:
        return self._view(task_id, await self._records(task_id))

    def _view(self, task_id: str, records: list[JobRecord]) -> TaskView:
        return TaskView(task_id, records, self._ttl_ms(records), self._poll_ms(records))

    async def _records(self, task_id: str) -> list[JobRecord]:
        if not re.fullmatch(JOB_ID_PATTERN, task_id):
            raise TaskNotFound(task_id)
        if task_id.startswith("batch_"):
            query = JobQuery(batch_id=task_id, descending=False, limit=MAX_PAGE)
            records, _ = await self.manager.find(query)
        else:
            try:
                records = [await self.manager.get(task_id)]
            except UnknownJob:
                raise TaskNotFound(task_id) from None
        if not any(r.task_id == task_id for r in records):
            raise TaskNotFound(task_id)  # a job or batch started without a task
        return records

    def _ttl_ms(self, records: list[JobRecord]) -> int:
        """How long after creation the task is kept at least, as far as known now: until the
        retention period after its last job ends, and at least the ttl asked for."""
        retention = timedelta(seconds=self.manager.config.retention_seconds)
        now = datetime.now(UTC)
        kept = max((r.completed_at or now) if r.is_terminal else now for r in records) + retention
        head = records[0]
        if head.keep_until is not None:
            kept = max(kept, head.keep_until)
        return int((kept - head.created_at).total_seconds() * 1000)

    def _poll_ms(self, records: list[JobRecord]) -> int | None:
        seconds = [self._seconds_left(r) for r in records if not r.is_terminal]
        if not seconds:
            return None
        known = [s for s in seconds if s is not None]
        expected = min(known) if known else 10.0
        low, high = POLL_MS
        return int(min(high, max(low, expected * 1000 / 5)))

    def _seconds_left(self, record: JobRecord) -> float | None:
        """Until a proof is expected, or sooner if the job's own limits end it first."""
        _, seconds = self.manager.estimate(record, self.manager.current_difficulty(record))
        rate = self.manager.pool.hashrate
        limits = [] if seconds is None else [seconds]
        if (most := record.job_data.get("max_iterations")) and rate > 0:
            limits.append(max(0.0, (most - record.progress.hashes) / rate))
        if timeout := record.job_data.get("timeout_seconds"):
            limits.append(max(0.0, timeout - record.run_seconds))
        return min(limits) if limits else None

    async def wait(self, task_id: str) -> TaskView:
        """The task once it has ended, however long that takes (unless the server stops)."""
        while True:
            view = await self.view(task_id)
            if view.terminal:
                return view
            if self.manager.stopping:
                raise ServerStopping(task_id)
            unfinished = [r.job_id for r in view.records if not r.is_terminal]
            await self.manager.wait_many(unfinished, any_done=False, seconds=300)

    async def cancel(self, task_id: str) -> TaskView:
        """Cancel every unfinished job of the task; the task as it is afterwards."""
        for record in (await self.view(task_id)).records:
            if not record.is_terminal:
                with contextlib.suppress(UnknownJob):  # removed meanwhile: nothing to cancel
                    await self.manager.cancel(record.job_id)
        return await self.view(task_id)

    async def page(self, cursor: str | None) -> tuple[list[TaskView], str | None]:
        """Newest first (ties by id, descending); the cursor is the last task of the previous
        page, so tasks created in the same microsecond are neither skipped nor repeated."""
        heads: list[JobRecord] = []
        before: datetime | None = None
        if cursor:
            before, last_id = _decode_cursor(cursor)
            tick = timedelta(microseconds=1)
            tied = JobQuery(
                tasks_only=True,
                created_after=before - tick,
                created_before=before + tick,
                limit=MAX_PAGE,  # all of them, in practice: a handful at most
            )
            found = (await self.manager.find(tied))[0]
            heads = [h for h in found if h.job_id < last_id][: LIST_PAGE + 1]
        if len(heads) <= LIST_PAGE:
            query = JobQuery(
                tasks_only=True, created_before=before, limit=LIST_PAGE + 1 - len(heads)
            )
            heads += (await self.manager.find(query))[0]
        more = len(heads) > LIST_PAGE
        heads = heads[:LIST_PAGE]
        views = []
        for head in heads:
            assert head.task_id is not None
            if head.task_id == head.job_id:  # a one-job task: the head is all of it
                views.append(self._view(head.task_id, [head]))
                continue
            try:
                views.append(await self.view(head.task_id))
            except TaskNotFound:
                continue  # removed since the query
        return views, _encode_cursor(heads[-1]) if more else None

    def result(self, view: TaskView) -> dict[str, Any]:
        """The CallToolResult of the tool that was called, as its wire dict: its answer with
        the terminal status and the full records; an error result unless every job
        completed."""
        if len(view.records) == 1 and view.records[0].batch_id != view.task_id:
            record = view.records[0]
            model, _ = start_answer(self.manager, record)
            result = answer(model.model_copy(update={"job": record}), describe(record))
        else:
            batch = BatchAnswer(
                batch_id=view.task_id,
                job_ids=[r.job_id for r in view.records],
                statuses=[r.status for r in view.records],
                tags=sorted(set().union(*(r.tags for r in view.records))),
                jobs=view.records,
            )
            lines = [f"Batch {view.task_id}: {view.message}."]
            lines += [f"- {describe(r)}" for r in view.records]
            result = answer(batch, "\n".join(lines))
        result = result.model_copy(update={"is_error": view.outcome != "completed"})
        return result.model_dump(by_alias=True, mode="json", exclude_none=True)


def _encode_cursor(last: JobRecord) -> str:
    return base64.urlsafe_b64encode(
        f"{last.created_at.isoformat()} {last.job_id}".encode()
    ).decode()


def _decode_cursor(cursor: str) -> tuple[datetime, str]:
    """(created_at, job_id) of the last task listed."""
    invalid = MCPError(INVALID_PARAMS, f"invalid tasks/list cursor {cursor[:40]!r}")
    try:
        moment, last_id = base64.urlsafe_b64decode(cursor.encode()).decode().split(" ")
        created = datetime.fromisoformat(moment)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise invalid from None
    if created.tzinfo is None or not re.fullmatch(JOB_ID_PATTERN, last_id):
        raise invalid
    return created, last_id
