"""Reading the jobs file whatever state it is in: missing, damaged, partly bad.

A damaged file is never overwritten or deleted: it is hard-linked to
`jobs.json.corrupt-<UTC time>` and then replaced atomically by what could be recovered
(the backup's records, plus what this instance last knew), so a crash at any point leaves
either the damaged file or the recovered one in place. See `codec` for what counts as
damaged. These functions block; call them from a worker thread, under the file lock.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from pow_mcp.store.jsonfile.codec import Contents, UnreadableFile, parse
from pow_mcp.store.jsonfile.file import FileSig, read_file, set_aside, stat_sig

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Loaded:
    contents: Contents
    sig: FileSig | None
    repaired: bool  # the file was missing or damaged: the caller must write `contents`
    can_backup: bool  # the file on disk is a good one: keep it as the backup when replacing it


def load(path: Path, backup: Path, known: Contents, sig: FileSig | None) -> Loaded:
    """The file's content (call under the write lock), recovering damage.

    `known`/`sig` are what the caller last read: an unchanged file is not read again.
    An unreadable file is set aside and replaced by the backup's records plus `known`; a
    file with some bad records is set aside and its good records kept.
    """
    current = stat_sig(path)
    if current is None:
        # First start, or the file was removed behind our back: what we know is the best base.
        if known.lines:
            log.warning("%s is missing; rewriting it from memory", path)
        return Loaded(known, None, repaired=True, can_backup=False)
    if current == sig:
        return Loaded(known, sig, repaired=False, can_backup=True)
    found = read_file(path)
    if found is None:
        return Loaded(known, None, repaired=True, can_backup=False)
    data, read_sig = found
    try:
        parsed = parse(data, known)
    except UnreadableFile as exc:
        aside = set_aside(path, "corrupt")
        saved = _load_backup(backup)
        log.warning(
            "jobs file %s could not be read (%s); kept it as %s; starting from %s",
            path,
            exc,
            aside,
            f"{backup} ({len(saved.lines)} jobs)" if saved.lines else "no jobs",
        )
        lines = {**saved.lines, **known.lines}
        entries = {**saved.entries, **known.entries}
        return Loaded(Contents(lines, entries), None, repaired=True, can_backup=False)
    if parsed.bad:
        _keep_partly_bad(path, parsed.bad)
        return Loaded(parsed.contents, None, repaired=True, can_backup=False)
    return Loaded(parsed.contents, read_sig, repaired=False, can_backup=True)


def peek(path: Path, known: Contents, sig: FileSig | None) -> Loaded | None:
    """The file's content if it changed since `sig` (call under a shared lock); None if it
    did not or is missing. A damaged file comes back `repaired` for the writer to handle."""
    current = stat_sig(path)
    if current is None or current == sig:
        return None
    found = read_file(path)
    if found is None:
        return None
    data, read_sig = found
    try:
        parsed = parse(data, known)
    except UnreadableFile:
        return Loaded(known, None, repaired=True, can_backup=False)
    return Loaded(parsed.contents, read_sig, repaired=bool(parsed.bad), can_backup=True)


def _load_backup(backup: Path) -> Contents:
    found = read_file(backup)
    if found is None:
        return Contents()
    try:
        parsed = parse(found[0])
    except UnreadableFile as exc:
        aside = set_aside(backup, "corrupt")
        log.warning("backup %s could not be read either (%s); kept it as %s", backup, exc, aside)
        return Contents()
    if parsed.bad:
        _keep_partly_bad(backup, parsed.bad)
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
