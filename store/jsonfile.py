"""The durable job store: `$JOBS_DATA_DIR/jobs.json`, written atomically and debounced.

How a change reaches the disk:

- Every change goes into `_pending` (this instance's own changes since its last write).
- Progress-like changes are visible at once (`_overlay`) and written by the debounce
  task `run_writer` within `debounce_seconds` of the first of them.
- Creates, terminal moves and deletions are durable points: the caller waits for a
  write that *starts* after its change (group commit: callers arriving while a write
  runs are all served by the next single write, which one of them performs). Until
  that write has fsynced, the change is kept out of `get`/`list` (`_staged`).
- A write runs in a thread under an exclusive `flock` on `jobs.json.lock`: re-read the
  file if another process changed it, apply only this instance's pending changes and
  deletions on top, write a temp file, fsync, keep the old file as `jobs.json.bak`,
  rename, fsync the directory, and adopt the result as this instance's view.

Several processes may share the directory: each record's `owner` is the instance that
created it, and an instance is alive while it holds `instances/<id>.lock`. On open, only
unfinished records whose owner is gone are marked failed (interrupted). Readers re-read
the file (under a shared lock) when its (mtime, size, inode) changed.

A damaged file is never overwritten or deleted: it is hard-linked to
`jobs.json.corrupt-<UTC time>` and then replaced atomically by the recovered content
(the backup's records, plus what this instance last knew if it was already running), so
a crash at any point leaves either the damaged file or the recovered one in place. See
`store.codec` for what counts as damaged.

If a write fails (disk full, I/O error), every caller waiting on it gets
`StoreWriteError` and its change stays pending (and hidden, for durable changes) until a
later write succeeds.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import anyio

from store.base import (
    DataDirError,
    JobExistsError,
    JobIds,
    JobNotFoundError,
    Page,
    StoreClosedError,
    StoreError,
    StoreWriteError,
    UpdateKind,
    check_page_args,
    classify_update,
    cleanup_forever,
    expired,
    page,
)
from store.codec import Contents, UnreadableFile, encode_line, parse
from store.fileio import (
    FileSig,
    ensure_dir,
    ensure_private_file,
    read_file,
    remove_stale_temps,
    set_aside,
    stat_sig,
    write_atomic,
)
from store.locking import (
    InstanceLock,
    flocked,
    is_valid_instance_id,
    new_instance_id,
    owner_alive,
    sweep_dead_instances,
)
from store.record import (
    ACTIVE,
    INTERRUPTED_ERROR,
    JobRecord,
    JobStatus,
    copy_record,
    utc_now,
)

log = logging.getLogger(__name__)

JOBS_FILE = "jobs.json"
RETRY_SECONDS = 1.0  # least pause before the debounce task retries a failed write


@dataclass(frozen=True)
class _Change:
    seq: int  # orders the changes of one store, to tell which copy of a record is newer
    record: JobRecord
    # The record was already terminal before this change. Only then may its absence from
    # the file mean that a cleanup removed it (cleanups remove terminal records only).
    was_terminal: bool = False


@dataclass
class _Batch:
    """What one write applies on top of the file."""

    changes: dict[str, _Change]
    deletes: set[str]
    creates: set[str]
    check: bool  # re-read (and repair) the file even if there is nothing to apply

    def __bool__(self) -> bool:
        return bool(self.changes or self.deletes or self.check)


@dataclass
class _Written:
    """A write's result, computed in the worker thread."""

    contents: Contents
    sig: FileSig | None
    wrote: bool
    conflicts: set[str] = field(default_factory=set)  # creates whose id another instance has


@dataclass
class _Ticket:
    """The outcome of one write, shared by every caller waiting for it."""

    error: StoreWriteError | None = None
    conflicts: set[str] = field(default_factory=set)


@dataclass
class _Loaded:
    contents: Contents
    sig: FileSig | None
    repaired: bool  # the file was missing or damaged: write what we recovered
    can_backup: bool  # the file on disk is the good one we read: keep it as .bak


class JsonFileJobStore:
    """Jobs in `data_dir/jobs.json`. Open with `JsonFileJobStore.open` or `store.open_store`.

    `open` returns a ready store; run `run_writer` in a task group for debounced writes
    (durable operations never depend on it) and call `close` when done.
    """

    def __init__(self, data_dir: Path, *, debounce_seconds: float, instance_id: str | None) -> None:
        if debounce_seconds < 0:
            raise ValueError(f"debounce_seconds must be >= 0, not {debounce_seconds}")
        self._instance_id = instance_id or new_instance_id()
        if not is_valid_instance_id(self._instance_id):
            raise ValueError(f"invalid instance id {self._instance_id!r}")
        self._dir = Path(data_dir).absolute()
        self._path = self._dir / JOBS_FILE
        self._backup = self._dir / f"{JOBS_FILE}.bak"
        self._lock_path = self._dir / f"{JOBS_FILE}.lock"
        self._instances = self._dir / "instances"
        self._instance_lock = InstanceLock(self._instances / f"{self._instance_id}.lock")
        self._debounce = debounce_seconds

        # The last known file content (after our last write or re-read), replaced whole.
        self._disk = Contents()
        self._sig: FileSig | None = None
        self._epoch = 0  # bumped when a write is adopted; a re-read older than that is dropped
        self._overlay: dict[str, _Change] = {}  # non-durable changes, visible at once
        self._staged: dict[str, _Change] = {}  # durable changes not yet on disk: not visible
        self._pending: dict[str, _Change] = {}  # for the next write
        self._pending_deletes: set[str] = set()
        self._pending_creates: set[str] = set()
        self._check_pending = False
        self._seq = 0

        self._started = 0  # writes started (a write's number is its generation)
        self._completed = 0
        self._writing = False
        self._write_done = anyio.Event()
        self._tickets: dict[int, _Ticket] = {}
        self._writes = 0
        self._dirty = anyio.Event()  # set iff _dirty_since is not None
        self._dirty_since: float | None = None
        self._refreshing: anyio.Event | None = None
        self._state = "new"
        self._closed = anyio.Event()

    @classmethod
    async def open(
        cls, data_dir: Path, *, debounce_seconds: float = 1.0, instance_id: str | None = None
    ) -> JsonFileJobStore:
        """Open the store, recovering the file and marking orphaned jobs interrupted.

        Raises `DataDirError` if the directory cannot be created, read or written.
        """
        self = cls(data_dir, debounce_seconds=debounce_seconds, instance_id=instance_id)
        with anyio.CancelScope(shield=True):  # never strand a store holding its locks
            loaded, wrote = await anyio.to_thread.run_sync(self._sync_open)
        self._disk, self._sig = loaded.contents, loaded.sig
        self._writes += wrote
        self._state = "open"
        log.info(
            "job store %s opened as instance %s with %d jobs",
            self._path,
            self._instance_id,
            len(self._disk.records),
        )
        return self

    @property
    def instance_id(self) -> str:
        return self._instance_id

    @property
    def writes(self) -> int:
        return self._writes

    @property
    def path(self) -> Path:
        return self._path

    # -- the JobStore operations ------------------------------------------------------

    async def create(self, record: JobRecord) -> JobRecord:
        self._check_usable()
        job_id = record.job_id
        if self._latest(job_id) is not None:
            raise JobExistsError(f"job {job_id} already exists")
        stored = copy_record(record)
        stored.owner = self._instance_id
        change = self._new_change(stored)
        self._staged[job_id] = change
        self._pending_creates.add(job_id)
        ticket = await self._commit()
        if job_id in ticket.conflicts:
            raise JobExistsError(f"job {job_id} already exists (created by another instance)")
        return copy_record(stored)

    async def get(self, job_id: str) -> JobRecord | None:
        self._check_usable()
        await self._refresh()
        record = self._visible(job_id)
        return None if record is None else copy_record(record)

    async def update(self, record: JobRecord) -> bool:
        self._check_usable()
        job_id = record.job_id
        old = self._latest(job_id)
        if old is None:
            raise JobNotFoundError(f"job {job_id} does not exist")
        kind = classify_update(old, record)
        if kind is UpdateKind.IGNORE:
            return False
        stored = copy_record(record)
        stored.owner = old.owner
        change = self._new_change(stored, was_terminal=old.is_terminal)
        if kind is UpdateKind.DURABLE or job_id in self._staged:
            # Hidden until durable; a progress change to a job whose creation is still on
            # its way to the disk waits with it (it becomes visible when the job does).
            self._staged[job_id] = change
        else:
            self._overlay[job_id] = change
        if kind is UpdateKind.DURABLE:
            await self._commit()
        else:
            self._mark_dirty()
        return True

    async def list(self, status: JobStatus | None = None, limit: int = 50, offset: int = 0) -> Page:
        self._check_usable()
        check_page_args(limit, offset)
        await self._refresh()
        return page(self._visible_records(), status, limit, offset)

    async def delete_terminal_older_than(
        self, max_age_seconds: float, now: datetime | None = None
    ) -> JobIds:
        self._check_usable()
        await self._refresh()
        candidates = (r for r in self._visible_records() if r.job_id not in self._staged)
        doomed = expired(candidates, max_age_seconds, now)
        if not doomed:
            return []
        for job_id in doomed:
            self._pending_deletes.add(job_id)
            self._pending.pop(job_id, None)
        await self._commit()
        return [job_id for job_id in doomed if job_id not in self._disk.records]

    async def flush(self) -> None:
        if self._state == "closed":
            raise StoreClosedError("the job store is closed")
        if self._has_pending():
            await self._commit()
        elif self._writing:
            await self._wait_for(self._started)

    async def close(self) -> None:
        """Flush, then release this instance's lock. Safe to call more than once."""
        if self._state == "closing":
            await self._closed.wait()
            return
        if self._state in ("new", "closed"):
            return
        self._state = "closing"
        try:
            with anyio.CancelScope(shield=True):
                await self.flush()
        finally:
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(self._instance_lock.release)
            self._state = "closed"
            self._closed.set()
            self._dirty.set()  # lets run_writer see the store is closed
            unsaved = len(self._pending) + len(self._pending_deletes)
            if unsaved:
                log.error("job store %s closed with %d changes unsaved", self._path, unsaved)

    async def owner_alive(self, owner: str | None) -> bool:
        if owner is None:
            return False
        if owner == self._instance_id:
            return True
        return await anyio.to_thread.run_sync(owner_alive, self._instances, owner)

    async def run_cleanup(self, retention_seconds: float, interval_seconds: float) -> None:
        await cleanup_forever(self, retention_seconds, interval_seconds)

    async def run_writer(self) -> None:
        """Write debounced changes until the store closes; run it in a task group."""
        while self._state in ("new", "open"):
            await self._dirty.wait()
            while (since := self._dirty_since) is not None:
                delay = since + self._debounce - anyio.current_time()
                if delay <= 0 or self._state != "open":
                    break
                await anyio.sleep(delay)
            if self._dirty_since is None or self._state != "open":
                continue  # a durable write took the changes, or close() will flush them
            ticket = await self._wait_for(self._started + 1)
            if ticket.error is not None:
                await anyio.sleep(max(self._debounce, RETRY_SECONDS))

    # -- views --------------------------------------------------------------------------

    def _visible(self, job_id: str) -> JobRecord | None:
        change = self._overlay.get(job_id)
        return change.record if change is not None else self._disk.records.get(job_id)

    def _visible_records(self) -> Sequence[JobRecord]:
        overlay = self._overlay
        if not overlay:
            return list(self._disk.records.values())
        return [
            overlay[job_id].record if job_id in overlay else record
            for job_id, record in self._disk.records.items()
        ]

    def _latest(self, job_id: str) -> JobRecord | None:
        """The newest version of a job this store knows, visible or not."""
        change = self._staged.get(job_id) or self._overlay.get(job_id)
        return change.record if change is not None else self._disk.records.get(job_id)

    def _check_usable(self) -> None:
        if self._state != "open":
            raise StoreClosedError("the job store is closed")

    # -- group commit -------------------------------------------------------------------

    def _new_change(self, record: JobRecord, *, was_terminal: bool = False) -> _Change:
        self._seq += 1
        change = _Change(self._seq, record, was_terminal)
        self._pending[record.job_id] = change
        return change

    def _has_pending(self) -> bool:
        return bool(self._pending or self._pending_deletes or self._check_pending)

    def _mark_dirty(self) -> None:
        if self._dirty_since is None:
            self._dirty_since = anyio.current_time()
            self._dirty.set()

    async def _commit(self, *, check: bool = False) -> _Ticket:
        """Wait for a write that starts after now (so it carries every change made so far)."""
        self._check_pending |= check
        ticket = await self._wait_for(self._started + 1)
        if ticket.error is not None:
            # A fresh exception per waiter: they all raise it, from different tasks.
            raise StoreWriteError(str(ticket.error)) from ticket.error.__cause__
        return ticket

    async def _wait_for(self, generation: int) -> _Ticket:
        """Wait until write `generation` has finished, performing it if nobody is."""
        if generation <= self._completed:
            return _Ticket()  # long done; a failure then was reported to its own callers
        ticket = self._tickets.setdefault(generation, _Ticket())
        while self._completed < generation:
            if self._writing:
                await self._write_done.wait()
            else:
                await self._write()
        return ticket

    async def _write(self) -> None:
        self._writing = True
        self._started += 1
        generation = self._started
        done = self._write_done = anyio.Event()
        batch = self._take_batch()
        error: StoreWriteError | None = None
        written: _Written | None = None
        try:
            # Shielded: once the batch left _pending, it must be written or put back.
            with anyio.CancelScope(shield=True):
                if batch:
                    try:
                        written = await anyio.to_thread.run_sync(
                            self._sync_commit, batch, self._disk, self._sig
                        )
                    except BaseException as exc:
                        self._restore(batch)
                        if not isinstance(exc, Exception):
                            raise
                        error = StoreWriteError(f"could not write {self._path}: {exc}")
                        error.__cause__ = exc
                        log.error("%s; %d changes stay pending", error, len(self._pending))
                    else:
                        self._adopt_write(batch, written)
        finally:
            self._completed = generation
            self._writing = False
            ticket = self._tickets.pop(generation, None)
            if ticket is not None:
                ticket.error = error
                if written is not None:
                    ticket.conflicts = written.conflicts
            done.set()

    def _take_batch(self) -> _Batch:
        batch = _Batch(
            self._pending, self._pending_deletes, self._pending_creates, self._check_pending
        )
        self._pending, self._pending_deletes, self._pending_creates = {}, set(), set()
        self._check_pending = False
        self._dirty_since = None
        if self._dirty.is_set():
            self._dirty = anyio.Event()
        return batch

    def _restore(self, batch: _Batch) -> None:
        """Put a failed write's batch back under any newer changes."""
        for job_id, change in batch.changes.items():
            self._pending.setdefault(job_id, change)
        self._pending_deletes |= batch.deletes
        self._pending_creates |= batch.creates
        self._check_pending |= batch.check
        self._sig = None  # the file may or may not have changed: re-read it next time
        self._mark_dirty()

    def _adopt_write(self, batch: _Batch, written: _Written) -> None:
        self._adopt(written.contents, written.sig)
        self._writes += written.wrote
        for job_id, change in batch.changes.items():
            overlaid = self._overlay.get(job_id)
            if overlaid is not None and overlaid.seq <= change.seq:
                del self._overlay[job_id]  # the disk has this version or a newer one
            staged = self._staged.get(job_id)
            if staged is None:
                continue
            if staged.seq <= change.seq or job_id in written.conflicts:
                del self._staged[job_id]  # published: it is durable now
            elif not staged.record.is_terminal and job_id in self._disk.records:
                # A progress change made while the job's creation was being written:
                # the job is durable now, so the change may show like any other.
                del self._staged[job_id]
                self._overlay[job_id] = staged
        for job_id in written.conflicts:
            self._pending.pop(job_id, None)
            self._overlay.pop(job_id, None)

    def _adopt(self, contents: Contents, sig: FileSig | None) -> None:
        self._disk, self._sig = contents, sig
        self._epoch += 1
        for job_id, change in list(self._overlay.items()):
            on_disk = contents.records.get(job_id)
            if on_disk is None:
                # Unfinished jobs are never cleaned up, so it was lost (a damaged file
                # rebuilt by another instance): write our copy back.
                log.warning("job %s: missing from %s; saving it again", job_id, self._path)
                self._pending.setdefault(job_id, change)
                self._mark_dirty()
            elif on_disk.is_terminal:
                del self._overlay[job_id]  # finished elsewhere: never show our older state

    # -- seeing other instances' writes ---------------------------------------------------

    async def _refresh(self) -> None:
        """Re-read the file if another process replaced it since we last looked."""
        if self._refreshing is not None:
            await self._refreshing.wait()
            return
        done = self._refreshing = anyio.Event()
        try:
            epoch = self._epoch
            try:
                result = await anyio.to_thread.run_sync(self._sync_read, self._disk, self._sig)
            except OSError as exc:
                log.warning("could not re-read %s; showing the jobs last read: %s", self._path, exc)
                return
            if result is not None and result.repaired:
                try:
                    await self._commit(check=True)  # the writer sets the damage aside
                except StoreError as exc:
                    log.warning("could not repair %s: %s", self._path, exc)
            elif result is not None and self._epoch == epoch:
                self._adopt(result.contents, result.sig)
        finally:
            self._refreshing = None
            done.set()

    # -- blocking work, run in a worker thread -------------------------------------------

    def _sync_open(self) -> tuple[_Loaded, bool]:
        try:
            ensure_dir(self._dir)
            ensure_dir(self._instances)
            ensure_private_file(self._lock_path)
        except OSError as exc:
            raise self._dir_error(exc) from exc
        try:
            self._instance_lock.acquire()
        except BlockingIOError:
            raise StoreError(
                f"instance id {self._instance_id!r} is in use by a live process on {self._dir}"
            ) from None
        except OSError as exc:
            raise self._dir_error(exc) from exc
        try:
            with flocked(self._lock_path, exclusive=True):
                for stale in remove_stale_temps(self._path):
                    log.info("removed %s, left by an interrupted write", stale)
                for owner in sweep_dead_instances(self._instances):
                    log.info("removed the lock file of instance %s, which is gone", owner)
                loaded = self._sync_load(Contents(), None)
                contents, interrupted = self._mark_interrupted(loaded.contents)
                if not (loaded.repaired or interrupted):
                    return loaded, False
                backup = self._backup if loaded.can_backup else None
                sig = write_atomic(self._path, contents.render(), backup=backup)
                return _Loaded(contents, sig, repaired=False, can_backup=True), True
        except BaseException as exc:
            self._instance_lock.release()
            if isinstance(exc, OSError):
                raise self._dir_error(exc) from exc
            raise

    def _dir_error(self, exc: OSError) -> DataDirError:
        reason = exc.strerror or str(exc)
        where = exc.filename or self._dir
        return DataDirError(
            f"cannot use the jobs data directory {self._dir} ({where}: {reason}). "
            "Set JOBS_DATA_DIR to a writable directory, or PERSIST_JOBS=false to keep "
            "jobs in memory only."
        )

    def _mark_interrupted(self, contents: Contents) -> tuple[Contents, int]:
        """Fail the unfinished jobs whose instance is gone (call under the write lock)."""
        alive: dict[str, bool] = {}
        records, lines = dict(contents.records), dict(contents.lines)
        count = 0
        for job_id, record in contents.records.items():
            if record.status not in ACTIVE:
                continue
            owner = record.owner
            if owner is not None and owner != self._instance_id:
                if owner not in alive:
                    alive[owner] = owner_alive(self._instances, owner)
                if alive[owner]:
                    continue
            now = utc_now()
            failed = record.model_copy(
                update={
                    "status": JobStatus.FAILED,
                    "error": INTERRUPTED_ERROR,
                    "completed_at": now,
                    "updated_at": now,
                }
            )
            records[job_id], lines[job_id] = failed, encode_line(job_id, failed)
            count += 1
            log.warning(
                "job %s: was %s when its server instance %s stopped; marked failed",
                job_id,
                record.status.value,
                owner or "(unknown)",
            )
        return (Contents(records, lines) if count else contents), count

    def _sync_read(self, known: Contents, sig: FileSig | None) -> _Loaded | None:
        """The file's content if it changed since `sig`; `repaired` set if it is damaged."""
        current = stat_sig(self._path)
        if current is None or current == sig:
            return None  # a missing file is rewritten by our next write
        with flocked(self._lock_path, exclusive=False):
            found = read_file(self._path)
        if found is None:
            return None
        data, read_sig = found
        try:
            parsed = parse(data, known)
        except UnreadableFile:
            return _Loaded(known, None, repaired=True, can_backup=False)
        return _Loaded(parsed.contents, read_sig, repaired=bool(parsed.bad), can_backup=True)

    def _sync_commit(self, batch: _Batch, known: Contents, sig: FileSig | None) -> _Written:
        with flocked(self._lock_path, exclusive=True):
            loaded = self._sync_load(known, sig)
            if not (batch.changes or batch.deletes or loaded.repaired):
                return _Written(loaded.contents, loaded.sig, wrote=False)
            records, lines = dict(loaded.contents.records), dict(loaded.contents.lines)
            for job_id in batch.deletes:
                on_disk = records.get(job_id)
                if on_disk is not None and on_disk.is_terminal:
                    del records[job_id], lines[job_id]
            conflicts: set[str] = set()
            for job_id, change in batch.changes.items():
                record, on_disk = change.record, records.get(job_id)
                if on_disk is None and job_id not in batch.creates and change.was_terminal:
                    log.info("job %s: not saved: a cleanup removed it from the file", job_id)
                    continue  # never resurrect what another instance deleted
                taken = on_disk is not None and on_disk.owner != record.owner
                if taken and job_id in batch.creates:
                    log.error("job %s: not created: another instance has that id", job_id)
                    conflicts.add(job_id)
                    continue
                if on_disk is not None and on_disk.is_terminal and not record.is_terminal:
                    log.warning("job %s: kept its final status %s", job_id, on_disk.status.value)
                    continue
                records[job_id], lines[job_id] = record, encode_line(job_id, record)
            contents = Contents(records, lines)
            backup = self._backup if loaded.can_backup else None
            new_sig = write_atomic(self._path, contents.render(), backup=backup)
            return _Written(contents, new_sig, wrote=True, conflicts=conflicts)

    def _sync_load(self, known: Contents, sig: FileSig | None) -> _Loaded:
        """The file's current content (call under the write lock), recovering damage.

        An unreadable file is set aside and replaced by the backup's records plus the
        records this instance last knew; a file with some bad records is set aside and
        its good records kept. Either way the caller must write the result.
        """
        current = stat_sig(self._path)
        if current is None:
            # First start, or the file was removed behind our back: what we know is the
            # best base (empty on first start).
            if known.records:
                log.warning("%s is missing; rewriting it from memory", self._path)
            return _Loaded(known, None, repaired=True, can_backup=False)
        if current == sig:
            return _Loaded(known, sig, repaired=False, can_backup=True)
        found = read_file(self._path)
        if found is None:
            return _Loaded(known, None, repaired=True, can_backup=False)
        data, read_sig = found
        try:
            parsed = parse(data, known)
        except UnreadableFile as exc:
            aside = set_aside(self._path, "corrupt")
            backup = self._load_backup()
            log.warning(
                "jobs file %s could not be read (%s); kept it as %s; starting from %s",
                self._path,
                exc,
                aside,
                f"{self._backup} ({len(backup.records)} jobs)" if backup.records else "no jobs",
            )
            records = {**backup.records, **known.records}
            lines = {**backup.lines, **known.lines}
            return _Loaded(Contents(records, lines), None, repaired=True, can_backup=False)
        if parsed.bad:
            _keep_partly_bad(self._path, parsed.bad)
            return _Loaded(parsed.contents, None, repaired=True, can_backup=False)
        return _Loaded(parsed.contents, read_sig, repaired=False, can_backup=True)

    def _load_backup(self) -> Contents:
        found = read_file(self._backup)
        if found is None:
            return Contents()
        try:
            parsed = parse(found[0])
        except UnreadableFile as exc:
            aside = set_aside(self._backup, "corrupt")
            log.warning(
                "backup %s could not be read either (%s); kept it as %s", self._backup, exc, aside
            )
            return Contents()
        if parsed.bad:
            _keep_partly_bad(self._backup, parsed.bad)
        return parsed.contents


def _keep_partly_bad(path: Path, bad: Mapping[str, str]) -> None:
    """Set a file with unreadable records aside for inspection, naming each one skipped."""
    aside = set_aside(path, "corrupt")
    for job_id, reason in bad.items():
        log.warning(
            "job %s: skipped an unreadable record in %s (%s); the file is kept as %s",
            job_id,
            path,
            reason,
            aside,
        )
