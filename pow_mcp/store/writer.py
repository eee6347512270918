"""Write paths shared by the backends: group commit, and debounced progress.

`GroupCommit` batches operations that arrive while a write is under way into the next
single write (the JSON file store rewrites the whole file per write, so a burst of creates
or finishes must not cost one file each). `ProgressWriter` keeps the latest progress of each
job this instance runs and saves them together once per debounce window, through
`JobStore.save_progress`, whichever backend is behind it.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import anyio

from pow_mcp.store.api import JobStore, StoreError
from pow_mcp.store.record import JobRecord

log = logging.getLogger(__name__)

Op = TypeVar("Op")
RETRY_SECONDS = 1.0  # least pause before retrying a failed progress write


@dataclass(eq=False)
class _Slot:
    done: anyio.Event = field(default_factory=anyio.Event)
    result: Any = None
    error: BaseException | None = None


class GroupCommit(Generic[Op]):
    """Runs submitted operations in batches: one batch runs while the next one gathers.

    `run_batch(ops)` returns one result per op, an exception instance standing for that
    op's failure; if it raises, every op of the batch fails with that error. A batch, once
    started, runs to its end even if every caller was cancelled.
    """

    def __init__(self, run_batch: Callable[[list[Op]], Awaitable[Sequence[Any]]]) -> None:
        self._run_batch = run_batch
        self._pending: list[tuple[Op, _Slot]] = []
        self._running = False

    async def submit(self, op: Op) -> Any:
        slot = _Slot()
        self._pending.append((op, slot))
        if not self._running:
            self._running = True
            try:
                with anyio.CancelScope(shield=True):
                    while self._pending:
                        await self._run_next()
            finally:
                self._running = False
        await slot.done.wait()
        if slot.error is not None:
            raise slot.error
        return slot.result

    async def _run_next(self) -> None:
        batch, self._pending = self._pending, []
        try:
            results = await self._run_batch([op for op, _ in batch])
        except Exception as exc:
            results = [exc] * len(batch)
        for (_, slot), result in zip(batch, results, strict=True):
            if isinstance(result, StoreError):
                # A copy per caller: each raises it from its own task.
                slot.error = type(result)(*result.args)
                slot.error.__cause__ = result.__cause__
            elif isinstance(result, BaseException):
                slot.error = result
            else:
                slot.result = result
            slot.done.set()


class ProgressWriter:
    """Debounced progress saves for the jobs this instance runs.

    `put` replaces a job's pending record; `run` saves the pending ones together at most
    `debounce_seconds` after the first of them; `flush` saves now. A failed save is kept
    (unless a newer record replaced it) and retried. Jobs that turn out not to be ours any
    more (cancelled elsewhere, resumed by a peer) are passed to `on_lost`.
    """

    def __init__(
        self,
        store: JobStore,
        debounce_seconds: float,
        on_lost: Callable[[set[str]], None] = lambda ids: None,
    ) -> None:
        if debounce_seconds < 0:
            raise ValueError(f"debounce_seconds must be >= 0, not {debounce_seconds}")
        self._store = store
        self._debounce = debounce_seconds
        self._on_lost = on_lost
        self._pending: dict[str, JobRecord] = {}
        self._dirty = anyio.Event()
        self._lock = anyio.Lock()

    def put(self, record: JobRecord) -> None:
        self._pending[record.job_id] = record
        self._dirty.set()

    def discard(self, job_id: str) -> None:
        """Forget a job's pending progress (its final state is written another way)."""
        self._pending.pop(job_id, None)

    async def run(self) -> None:
        """Save pending progress forever; run it in a task group."""
        while True:
            await self._dirty.wait()
            await anyio.sleep(self._debounce)
            try:
                await self.flush()
            except StoreError as exc:
                self._store.outage.warning(log, "saving job progress failed, will retry: %s", exc)
                await anyio.sleep(max(self._debounce, RETRY_SECONDS))

    async def flush(self) -> None:
        """Save everything pending now; `StoreError` if the write failed (kept for later)."""
        async with self._lock:
            batch, self._pending = self._pending, {}
            self._dirty = anyio.Event()
            if not batch:
                return
            try:
                lost = await self._store.save_progress(list(batch.values()))
            except BaseException:
                for job_id, record in batch.items():
                    self._pending.setdefault(job_id, record)
                self._dirty.set()
                raise
        if lost:
            self._on_lost(lost)
