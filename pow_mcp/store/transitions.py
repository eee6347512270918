"""A job's status moves as data: which moves exist, when they apply, what they change.

Every state change of a stored job is one `Change` applied under one `Condition`,
atomically, by the backend (a conditional UPDATE in SQL; under the file lock for the JSON
file). The named operations of `store.api.JobStore` are built from them, so every
backend enforces the same table:

| operation     | by         | from                              | to                  |
|---------------|------------|-----------------------------------|---------------------|
| claim         | owner      | queued, waiting, running          | waiting or running  |
| save_progress | owner      | any unfinished (status unchanged) | (same)              |
| finish        | owner      | any unfinished                    | completed, failed, cancelled |
| requeue       | owner      | queued, waiting, running          | queued (a retry)    |
| release       | owner      | queued, waiting, running          | queued, no owner    |
| cancel        | anyone     | any unfinished                    | cancelled           |
| pause         | anyone     | queued, waiting, running          | paused              |
| resume        | anyone     | paused                            | queued, new owner   |
| adopt         | anyone     | queued, waiting, running of a gone owner | queued or failed |

"Owner" means the change names the stored owner: an instance that lost a job (cancelled,
paused then resumed elsewhere, recovered by a peer) can never write it again.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Final

from pow_mcp.store.record import ACTIVE, TERMINAL, UNFINISHED, JobRecord, JobStatus, copy_record


class _Any:
    def __repr__(self) -> str:
        return "ANY"


ANY: Final = _Any()  # a condition on the owner that any owner meets
Owner = str | None | _Any

# Kept from the stored job by every change: identity, and what only the store sets.
# (In the database these are columns a body write does not touch.)
STORED_FIELDS: Final = (
    "job_id",
    "created_at",
    "principal",
    "batch_id",
    "task_id",
    "tags",
    "keep_until",
    "completed_at",
)


@dataclass(frozen=True, slots=True)
class Condition:
    """What the stored job must look like for a change to apply."""

    statuses: frozenset[JobStatus]
    owner: Owner = ANY

    def holds(self, stored: JobRecord) -> bool:
        if stored.status not in self.statuses:
            return False
        return isinstance(self.owner, _Any) or stored.owner == self.owner


@dataclass(frozen=True, slots=True)
class Change:
    """What a transition writes.

    `record`: a new body (everything but identity, status and owner) from the job's owner;
    None keeps the stored body. `status` / `owner`: new values, None / ANY keep the stored
    ones. A move into a terminal status stamps `completed_at`; every change stamps
    `updated_at`.
    """

    record: JobRecord | None = None
    status: JobStatus | None = None
    owner: Owner = ANY


def apply_change(stored: JobRecord, change: Change, now: datetime) -> JobRecord:
    """The record after `change` (the reference the SQL backend mirrors column by column)."""
    new = copy_record(change.record if change.record is not None else stored)
    for name in STORED_FIELDS:
        setattr(new, name, getattr(stored, name))
    new.status = change.status or stored.status
    new.owner = stored.owner if isinstance(change.owner, _Any) else change.owner
    new.updated_at = now
    if new.status in TERMINAL and stored.status not in TERMINAL:
        new.completed_at = now
    return new


# The conditions of the named operations (see the table above).
CLAIMABLE: Final = frozenset({JobStatus.QUEUED, JobStatus.WAITING, JobStatus.RUNNING})
REQUEUEABLE: Final = ACTIVE
PAUSABLE: Final = ACTIVE
RESUMABLE: Final = frozenset({JobStatus.PAUSED})
CANCELLABLE: Final = UNFINISHED
