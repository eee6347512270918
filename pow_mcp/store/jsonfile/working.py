"""The content one write builds: what the file holds, with this batch's operations applied
one after another (in the write thread, under the file lock)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from pow_mcp.store.jsonfile.codec import Contents, Entry, encode_line
from pow_mcp.store.record import JobRecord
from pow_mcp.store.transitions import Change, Condition, apply_change


class Working:
    """The file's content plus this batch's operations; copied on the first change."""

    def __init__(self, base: Contents) -> None:
        self.base = base
        self.lines: dict[str, str] | None = None  # copied on the first change
        self.entries: dict[str, Entry] | None = None

    def get(self, job_id: str) -> JobRecord | None:
        if self.lines is None:
            return self.base.record(job_id)
        return Contents(self.lines, {}).record(job_id)

    def has(self, job_id: str) -> bool:
        return job_id in (self.lines if self.lines is not None else self.base.lines)

    def current_entries(self) -> dict[str, Entry]:
        return self.entries if self.entries is not None else self.base.entries

    def _mutable(self) -> tuple[dict[str, str], dict[str, Entry]]:
        if self.lines is None or self.entries is None:
            self.lines, self.entries = dict(self.base.lines), dict(self.base.entries)
        return self.lines, self.entries

    def put(self, record: JobRecord) -> None:
        lines, entries = self._mutable()
        lines[record.job_id] = encode_line(record.job_id, record)
        entries[record.job_id] = Entry.of(record)

    def delete(self, job_id: str) -> None:
        lines, entries = self._mutable()
        del lines[job_id], entries[job_id]

    @property
    def changed(self) -> bool:
        return self.lines is not None

    def freeze(self) -> Contents:
        if self.lines is None or self.entries is None:
            return self.base
        return Contents(self.lines, self.entries)


Op = Callable[[Working], Any]  # runs in the write thread; returns its result or raises


def change_in(
    work: Working, job_id: str, when: Condition, change: Change, now: datetime
) -> tuple[bool, JobRecord | None]:
    """`change` applied to the job in `work` if it meets `when`: (applied, record now)."""
    stored = work.get(job_id)
    if stored is None:
        return False, None
    if not when.holds(stored):
        return False, stored
    new = apply_change(stored, change, now)
    work.put(new)
    return True, new
