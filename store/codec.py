"""The jobs file's text: one JSON object, one record per line, rendered from cached lines.

Layout (any JSON reader reads it; the line structure is only an optimisation):

    {
    "pow_1704067200000_k3j9x0a1bq":{"job_id":"pow_1704067200000_k3j9x0a1bq",...},
    "pow_1704067200001_p0q9r8s7t6":{...}
    }

Each record's line is serialised once and cached, so a save joins cached strings and
only re-serialises the records that changed. Reading back a file this store family
wrote compares lines with the cache and parses only the lines that differ.

Loading rules for damaged files: text that is not UTF-8 JSON, JSON that is not an
object, or a non-empty object none of whose values is a job record is *unreadable*
(the caller sets the file aside and falls back to the backup). An object with some
bad values keeps its good records and reports the bad ones (the caller sets the whole
file aside, so nothing is lost, and logs each skipped id).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from pydantic import ValidationError

from store.record import JobRecord

_HEAD = "{\n"
_SEPARATOR = ",\n"
_TAIL = "\n}\n"


class UnreadableFile(ValueError):
    """The bytes are not a jobs file at all."""


@dataclass(frozen=True, eq=False)
class Contents:
    """Records and their cached lines, in file order. Never mutated once built."""

    records: dict[str, JobRecord] = field(default_factory=dict)
    lines: dict[str, str] = field(default_factory=dict)

    @cached_property
    def by_line(self) -> dict[str, str]:
        """Job id by line text, to recognise unchanged lines when re-reading."""
        return {line: job_id for job_id, line in self.lines.items()}

    def render(self) -> bytes:
        """The file's bytes."""
        return render(self.lines.values())


@dataclass(frozen=True)
class Parsed:
    contents: Contents
    bad: dict[str, str]  # job id (the key in the file) -> why it is not a record


def encode_line(job_id: str, record: JobRecord) -> str:
    """One file line: `"<id>":<record JSON>` (JSON text never holds a raw newline)."""
    return json.dumps(job_id, ensure_ascii=False) + ":" + record.model_dump_json()


def render(lines: Iterable[str]) -> bytes:
    body = _SEPARATOR.join(lines)
    return (_HEAD + body + _TAIL if body else "{\n}\n").encode()


def parse(data: bytes, known: Contents | None = None) -> Parsed:
    """Parse a jobs file, reusing `known` records whose lines are unchanged.

    Raises `UnreadableFile` as described in the module docstring.
    """
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise UnreadableFile(f"not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    if known is not None and known.lines:
        quick = _parse_lines(text, known)
        if quick is not None:
            return quick
    return _parse_document(text)


def load_record(key: str, raw: Any) -> JobRecord:
    """Validate one stored value; `ValueError` saying why it is not a job record."""
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
        where = ".".join(str(part) for part in first["loc"]) or "record"
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        raise ValueError(f"{where}: {first['msg']}{more}") from None


def _parse_document(text: str) -> Parsed:
    try:
        document = json.loads(text)
    except (ValueError, RecursionError) as exc:
        reason = "empty" if not text.strip() else f"not valid JSON ({exc})"
        raise UnreadableFile(reason) from None
    if not isinstance(document, dict):
        raise UnreadableFile(f"a JSON {type(document).__name__}, not an object of job records")
    records: dict[str, JobRecord] = {}
    lines: dict[str, str] = {}
    bad: dict[str, str] = {}
    for key, raw in document.items():
        try:
            record = load_record(key, raw)
        except ValueError as exc:
            bad[key] = str(exc)
            continue
        records[key] = record
        lines[key] = encode_line(key, record)
    return _result(records, lines, bad)


def _parse_lines(text: str, known: Contents) -> Parsed | None:
    """The fast path for files in our layout; None means "parse the whole document"."""
    if not (text.startswith(_HEAD) and text.endswith(_TAIL)):
        return None
    body = text[len(_HEAD) : -len(_TAIL)]
    records: dict[str, JobRecord] = {}
    lines: dict[str, str] = {}
    bad: dict[str, str] = {}
    by_line = known.by_line
    # A line split at a "," + newline inside a value would not parse on its own (no JSON
    # string holds a raw newline), so if every piece parses, the pieces are the members.
    for line in body.split(_SEPARATOR) if body else ():
        job_id = by_line.get(line)
        if job_id is not None:
            bad.pop(job_id, None)
            records[job_id] = known.records[job_id]
            lines[job_id] = line
            continue
        try:
            member = json.loads("{" + line + "}")
        except (ValueError, RecursionError):
            return None
        if not isinstance(member, dict) or len(member) != 1:
            return None
        ((key, raw),) = member.items()
        records.pop(key, None)  # a repeated key: the last one wins, as in a JSON parser
        lines.pop(key, None)
        try:
            record = load_record(key, raw)
        except ValueError as exc:
            bad[key] = str(exc)
            continue
        bad.pop(key, None)
        records[key] = record
        lines[key] = encode_line(key, record)
    return _result(records, lines, bad)


def _result(records: dict[str, JobRecord], lines: dict[str, str], bad: dict[str, str]) -> Parsed:
    if bad and not records:
        sample = next(iter(bad.items()))
        raise UnreadableFile(f"no value is a job record (e.g. {sample[0]!r}: {sample[1]})")
    return Parsed(Contents(records, lines), bad)
