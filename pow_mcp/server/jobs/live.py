"""A job this instance runs, as it is right now: its live record (newer than the store's),
its spec, its block and difficulty, and how it is told to stop."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from enum import StrEnum

import anyio

from pow_mcp.server.jobs.blocks import Anchor
from pow_mcp.server.jobs.spec import JobSpec
from pow_mcp.store import JobRecord, utc_now


class StopReason(StrEnum):
    CANCEL = "cancel"  # cancelled (already in the store): drop the work
    PAUSE = "pause"  # paused (already in the store): stop cleanly, keep the checkpoint
    SHUTDOWN = "shutdown"  # this server stops: JOBS_RECOVERY decides
    LOST = "lost"  # not this instance's job any more: drop it, write nothing


class RetryableError(Exception):
    """An attempt failed for a reason outside the job (max_retries applies)."""


@dataclass(eq=False)
class LiveJob:
    """A job this instance runs, as it is right now (newer than the store's copy)."""

    record: JobRecord
    spec: JobSpec
    anchor: Anchor | None = None  # the height given with the job, extrapolated
    difficulty: int = 0
    height: int = 0
    hashing: bool = False
    fault: str | None = None  # why the attempt must end as a (retryable) failure
    stop: StopReason | None = None
    ending: bool = False  # its end is being recorded: the store may say so before it leaves
    stop_requested: anyio.Event = field(default_factory=anyio.Event)
    done: anyio.Event = field(default_factory=anyio.Event)
    changed: anyio.Event = field(default_factory=anyio.Event)

    @property
    def job_id(self) -> str:
        return self.record.job_id

    def request_stop(self, reason: StopReason) -> None:
        if self.stop is None or reason is StopReason.CANCEL:
            self.stop = reason
        self.stop_requested.set()

    def notify(self) -> None:
        self.changed.set()
        self.changed = anyio.Event()


def anchor_for(record: JobRecord, spec: JobSpec, block_time: float) -> Anchor | None:
    """The height the job was started with, extrapolated from its creation (any restart)."""
    if spec.current_block_height is None:
        return None
    age = (utc_now() - record.created_at).total_seconds()
    return Anchor(spec.current_block_height, block_time, at=time.monotonic() - max(0.0, age))
