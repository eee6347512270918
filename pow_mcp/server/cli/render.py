"""How jobs read on a terminal: the table of `pow-mcp jobs list` and the details of `jobs show`."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import TextIO

from rich.table import Table

from pow_mcp.server.cli.progress import clock, rate
from pow_mcp.server.schemas import JobSummary
from pow_mcp.store import JobRecord, JobStatus, utc_now

# The table's columns, most important first; those that do not fit the width are left out,
# the least important first. DETAIL (label, nonce or error) takes what width is left.
_FIXED = ("ID", "STATUS", "HASHES", "DIFF", "AGE")
_DETAIL_MIN = 12
_GAP = 2  # between columns


def jobs_table(jobs: Sequence[JobSummary], width: int) -> Table:
    """The jobs as a table fitted to `width` columns of text."""
    now = utc_now()
    rows = [_row(job, now) for job in jobs]
    widths = {name: max([len(name)] + [len(row[name]) for row in rows]) for name in _FIXED}
    shown = list(_FIXED)
    while len(shown) > 2 and _width(widths, shown) > width:
        shown.pop()
    detail = width - _width(widths, shown) - _GAP
    table = Table(box=None, pad_edge=False, padding=(0, _GAP, 0, 0), header_style="bold")
    for name in shown:
        right = name in ("HASHES", "DIFF", "AGE")
        table.add_column(name, no_wrap=True, justify="right" if right else "left")
    if detail >= _DETAIL_MIN:
        table.add_column("DETAIL", no_wrap=True, overflow="ellipsis", max_width=detail)
    for row in rows:
        cells = [row[name] for name in shown]
        table.add_row(*cells, *([row["DETAIL"]] if detail >= _DETAIL_MIN else []))
    return table


def _width(widths: dict[str, int], names: Sequence[str]) -> int:
    return sum(widths[name] for name in names) + _GAP * (len(names) - 1)


def _row(job: JobSummary, now: datetime) -> dict[str, str]:
    if job.nonce is not None:
        detail = f"nonce {job.nonce}"
    elif job.error:
        detail = job.error
    elif job.blocked_by:
        detail = "after " + ", ".join(job.blocked_by)
    else:
        detail = job.label or job.prefix or ""
    return {
        "ID": job.job_id,
        "STATUS": job.status.value,
        "HASHES": f"{job.hashes:,}",
        "DIFF": str(job.difficulty) if job.difficulty else "-",
        "AGE": _age((now - job.created_at).total_seconds()) if job.created_at else "-",
        "DETAIL": detail,
    }


def _age(seconds: float) -> str:
    """3s, 12m, 5h, 9d: how long ago, in its largest unit."""
    for unit, size in (("d", 86_400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{int(seconds // size)}{unit}"
    return f"{max(0, int(seconds))}s"


def print_record(record: JobRecord, out: TextIO) -> None:
    data, p = record.job_data, record.progress
    running = record.status is JobStatus.RUNNING
    proof = record.result.proof_of_work if record.result else None
    lines: list[tuple[str, object]] = [
        ("job", record.job_id),
        ("status", record.status.value),
        ("prefix", data.get("prefix")),
        ("difficulty", data.get("difficulty") or data.get("difficulty_range")),
        ("label", data.get("label")),
        ("priority", data.get("priority")),
        ("created", _when(record.created_at)),
        ("started", _when(record.started_at)),
        ("updated", _when(record.updated_at)),
        ("ended", _when(record.completed_at)),
        ("hashes", f"{p.hashes:,} in {record.run_seconds:.1f} s of running"),
        ("rate", rate(p.hashrate) if running else None),
        ("best", f"{p.best_zeros} zeros" + (f": {p.best_hash}" if p.best_hash else "")),
        ("eta", clock(p.eta_seconds) if running and p.eta_seconds is not None else None),
        ("note", p.note),
        ("waiting", record.waiting_info.note if record.waiting_info else None),
        ("nonce", proof.nonce if proof else None),
        ("hash", proof.hash if proof else None),
        ("valid from", record.valid_from_block),
        ("error", record.error),
        ("blocked by", ", ".join(record.blocked_by)),
        ("tags", ", ".join(record.tags)),
        ("batch", record.batch_id),
        ("owner", record.owner),
        ("attempts", len(record.attempts) or None),
    ]
    for name, value in lines:
        if value not in (None, ""):
            out.write(f"{name + ':':<12}{value}\n")


def _when(value: datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value else None
