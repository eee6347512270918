"""The jobs file's text: one JSON object, one record per line, rendered from cached lines.

Layout (any JSON reader reads it; the line structure is only an optimisation):

    {
    "pow_1704067200000_k3j9x0a1bq":{"job_id":"pow_1704067200000_k3j9x0a1bq",...},
    "pow_1704067200001_p0q9r8s7t6":{...}
    }

The store keeps each record as its line of text plus a small `Entry` (the fields it
filters and sorts on), not as a parsed model: about a kilobyte a job. A record is parsed
again when it is read or changed. Reading back a file this store family wrote compares
lines with the cache and parses only the lines that differ.

Loading rules for damaged files: text that is not UTF-8 JSON, JSON that is not an
object, or a non-empty object none of whose values is a job record is *unreadable*
(the caller sets the file aside and falls back to the backup). An object with some
bad values keeps its good records and reports the bad ones (the caller sets the whole
file aside, so nothing is lost, and logs each skipped id). A record whose status this
version does not know (a newer version's) is *opaque*: kept byte for byte, never shown
as a job, never rewritten.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from typing import Any, NamedTuple

from pydantic import ValidationError

from pow_mcp.store.record import FutureRecordError, JobRecord, JobStatus

_HEAD = "{\n"
_SEPARATOR = ",\n"
_TAIL = "\n}\n"


class UnreadableFile(ValueError):
    """The bytes are not a jobs file at all."""


_NO_TAGS: frozenset[str] = frozenset()

# Fields that most records leave at their default: the file line leaves them out then
# (a reader gets the same default back), which keeps lines and memory small.
_SPARSE_DEFAULTS: dict[str, object] = {
    "principal": None,
    "batch_id": None,
    "task_id": None,
    "tags": [],
    "blocked_by": [],
    "run_after": None,
    "keep_until": None,
    "run_seconds": 0.0,
    "attempts": [],
    "recoveries": [],
}


class Entry(NamedTuple):
    """What the store needs of a record without parsing it (a `store.query.JobFacts`)."""

    job_id: str
    status: JobStatus
    priority: int
    created_at: datetime
    updated_at: datetime
    finished_at: datetime
    owner: str | None
    principal: str | None
    batch_id: str | None
    task_id: str | None
    tags: frozenset[str]
    blocked: bool
    run_after: datetime | None
    keep_until: datetime | None

    @classmethod
    def of(cls, record: JobRecord) -> Entry:
        intern = sys.intern  # owners and principals repeat across thousands of records
        updated, finished = record.updated_at, record.finished_at
        return cls(
            record.job_id,
            record.status,
            record.priority,
            record.created_at,
            updated,
            updated if finished == updated else finished,  # one object where they agree
            None if record.owner is None else intern(record.owner),
            None if record.principal is None else intern(record.principal),
            record.batch_id,
            record.task_id,
            frozenset(record.tags) if record.tags else _NO_TAGS,
            bool(record.blocked_by),
            record.run_after,
            record.keep_until,
        )


@dataclass(frozen=True, eq=False)
class Contents:
    """The file's records as lines (file order) and entries. Never mutated once built."""

    lines: dict[str, str] = field(default_factory=dict)  # every member, opaque ones too
    entries: dict[str, Entry] = field(default_factory=dict)  # the records this version reads

    @cached_property
    def by_line(self) -> dict[str, str]:
        """Job id by line text, to recognise unchanged lines when re-reading."""
        return {line: job_id for job_id, line in self.lines.items()}

    def record(self, job_id: str) -> JobRecord | None:
        """The parsed record (None if absent); `FutureRecordError` if it is opaque."""
        line = self.lines.get(job_id)
        if line is None:
            return None
        return load_record(job_id, json.loads("{" + line + "}")[job_id])

    def render(self) -> bytes:
        """The file's bytes."""
        return render(self.lines.values())


@dataclass(frozen=True)
class Parsed:
    contents: Contents
    bad: dict[str, str]  # job id (the key in the file) -> why it is not a record


def encode_line(job_id: str, record: JobRecord) -> str:
    """One file line: `"<id>":<record JSON>` (JSON text never holds a raw newline)."""
    unset = {name for name, default in _SPARSE_DEFAULTS.items() if getattr(record, name) == default}
    return json.dumps(job_id, ensure_ascii=False) + ":" + record.model_dump_json(exclude=unset)


def render(lines: Iterable[str]) -> bytes:
    body = _SEPARATOR.join(lines)
    return (_HEAD + body + _TAIL if body else "{\n}\n").encode()


def parse(data: bytes, known: Contents | None = None) -> Parsed:
    """Parse a jobs file, reusing `known` entries whose lines are unchanged.

    Raises `UnreadableFile` as described in the module docstring.
    """
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise UnreadableFile(f"not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    in_our_layout = _parse_lines(text, known or Contents())
    return in_our_layout if in_our_layout is not None else _parse_document(text)


def load_record(key: str, raw: Any) -> JobRecord:
    """Validate one stored value; `ValueError` saying why it is not a job record
    (`FutureRecordError` if it is a newer version's)."""
    if not isinstance(raw, dict):
        raise ValueError(f"a JSON {type(raw).__name__}, not an object")
    job_id = raw.get("job_id", key)
    if job_id != key:
        raise ValueError(f"its job_id {job_id!r} differs from its key")
    try:
        return JobRecord.model_validate(raw if "job_id" in raw else {**raw, "job_id": key})
    except ValidationError as exc:
        errors = exc.errors()
        first = errors[0]
        cause = first.get("ctx", {}).get("error")
        if isinstance(cause, FutureRecordError):
            raise cause from None
        where = ".".join(str(part) for part in first["loc"]) or "record"
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        raise ValueError(f"{where}: {first['msg']}{more}") from None


class _Builder:
    """Collects members in file order; the last of repeated keys wins, as in a JSON parser."""

    def __init__(self) -> None:
        self.lines: dict[str, str] = {}
        self.entries: dict[str, Entry] = {}
        self.bad: dict[str, str] = {}
        self.opaque = 0

    def add(self, key: str, line: str, entry: Entry | None) -> None:
        self.lines.pop(key, None)
        self.entries.pop(key, None)
        self.bad.pop(key, None)
        self.lines[key] = line
        if entry is not None:
            self.entries[key] = entry

    def add_raw(self, key: str, raw: Any, line: str | None = None) -> None:
        try:
            record = load_record(key, raw)
        except FutureRecordError:
            self.add(key, line if line is not None else _raw_line(key, raw), None)
            self.opaque += 1
            return
        except ValueError as exc:
            self.lines.pop(key, None)
            self.entries.pop(key, None)
            self.bad[key] = str(exc)
            return
        self.add(key, encode_line(key, record), Entry.of(record))

    def result(self) -> Parsed:
        if self.bad and not self.lines:
            sample = next(iter(self.bad.items()))
            raise UnreadableFile(f"no value is a job record (e.g. {sample[0]!r}: {sample[1]})")
        return Parsed(Contents(self.lines, self.entries), self.bad)


def _raw_line(key: str, raw: Any) -> str:
    return json.dumps(key, ensure_ascii=False) + ":" + json.dumps(raw, ensure_ascii=False)


def _parse_document(text: str) -> Parsed:
    try:
        document = json.loads(text)
    except (ValueError, RecursionError) as exc:
        reason = "empty" if not text.strip() else f"not valid JSON ({exc})"
        raise UnreadableFile(reason) from None
    if not isinstance(document, dict):
        raise UnreadableFile(f"a JSON {type(document).__name__}, not an object of job records")
    builder = _Builder()
    for key, raw in document.items():
        builder.add_raw(key, raw)
    return builder.result()


def _parse_lines(text: str, known: Contents) -> Parsed | None:
    """Files in our layout, line by line (unchanged lines are not parsed again, and a newer
    version's lines are kept verbatim); None means "parse the whole document"."""
    if not (text.startswith(_HEAD) and text.endswith(_TAIL)):
        return None
    body = text[len(_HEAD) : -len(_TAIL)]
    builder = _Builder()
    by_line = known.by_line
    # A line split at a "," + newline inside a value would not parse on its own (no JSON
    # string holds a raw newline), so if every piece parses, the pieces are the members.
    for line in body.split(_SEPARATOR) if body else ():
        job_id = by_line.get(line)
        if job_id is not None:
            builder.add(job_id, line, known.entries.get(job_id))
            continue
        try:
            member = json.loads("{" + line + "}")
        except (ValueError, RecursionError):
            return None
        if not isinstance(member, dict) or len(member) != 1:
            return None
        ((key, raw),) = member.items()
        builder.add_raw(key, raw, line)
    return builder.result()
