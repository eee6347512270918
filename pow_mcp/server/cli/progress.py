"""The progress display of `solve` and `jobs watch`: a live rich bar on a terminal, plain
lines anywhere else (a log, a pipe, CI), so the output stays readable when captured."""

from __future__ import annotations

import time
from dataclasses import dataclass
from types import TracebackType
from typing import Any, TextIO

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn

from pow_mcp.pow.difficulty import expected_hashes

# The bar shows the share of the expected work done. A proof search is memoryless, so past
# the expected count the bar would lie: it stops just short of full until the proof is found.
BAR_CAP = 0.99


@dataclass(frozen=True)
class Reading:
    """One look at a search: what the display shows."""

    status: str
    hashes: int
    hashrate: float  # hashes per second; 0 when not measured (or not hashing)
    best_zeros: int
    eta_seconds: float | None
    elapsed: float | None = None  # None: the time since the display began


def clock(seconds: float | None) -> str:
    """`2:03`, `1:02:03`, `3.5 days`, `1.2e+03 years`; `?` when unknown."""
    if seconds is None:
        return "?"
    if seconds >= 31_557_600:
        return f"{seconds / 31_557_600:.3g} years"
    if seconds >= 2 * 86_400:
        return f"{seconds / 86_400:.3g} days"
    whole = int(seconds)
    hours, rest = divmod(whole, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


def rate(hashrate: float) -> str:
    return f"{hashrate / 1e6:.2f} M/s" if hashrate > 0 else "- M/s"


class ProgressDisplay:
    """Shows readings of one search on `stream`.

    On an interactive terminal: a live bar (redrawn in place, cleared on exit). Elsewhere: a
    line whenever the status changes, and at most every `every` seconds while hashes move.
    """

    def __init__(self, stream: TextIO, difficulty: int | None, *, every: float = 5.0) -> None:
        self.difficulty = difficulty or None
        self.every = every
        self.stream = stream
        console = Console(file=stream, highlight=False)
        # isatty too: FORCE_COLOR makes rich treat a pipe as a terminal, but a pipe must still
        # get lines rather than cursor movements.
        self.live = stream.isatty() and console.is_interactive
        self.began = time.monotonic()
        self._last: tuple[float, Reading] | None = None
        self._progress: Progress | None = None
        self._task: TaskID | None = None
        if self.live:
            self._progress = Progress(
                TextColumn("{task.description:<9}"),
                BarColumn(bar_width=24),
                TextColumn("{task.fields[hashes]} hashes"),
                TextColumn("{task.fields[rate]}"),
                TextColumn("best {task.fields[best]}"),
                TextColumn("elapsed {task.fields[elapsed]}"),
                TextColumn("ETA {task.fields[eta]}"),
                console=console,
                transient=True,
                redirect_stdout=False,
                redirect_stderr=False,
            )

    def __enter__(self) -> ProgressDisplay:
        if self._progress is not None:
            self._progress.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        if self._progress is not None:
            self._progress.stop()

    def update(self, reading: Reading) -> None:
        fields = self._fields(reading)
        if self._progress is not None:
            self._show_live(reading, fields)
        elif self._due(reading):
            self.stream.write(
                f"{reading.status:<9} {fields['hashes']} hashes  {fields['rate']}  "
                f"best {fields['best']}  elapsed {fields['elapsed']}  ETA {fields['eta']}\n"
            )
            self.stream.flush()

    def _fields(self, reading: Reading) -> dict[str, Any]:  # Any: rich takes **fields
        elapsed = reading.elapsed
        if elapsed is None:
            elapsed = time.monotonic() - self.began
        target = f"/{self.difficulty}" if self.difficulty else ""
        return {
            "hashes": f"{reading.hashes:,}",
            "rate": rate(reading.hashrate),
            "best": f"{reading.best_zeros}{target} zeros",
            "elapsed": clock(elapsed),
            "eta": clock(reading.eta_seconds),
        }

    def _show_live(self, reading: Reading, fields: dict[str, Any]) -> None:
        assert self._progress is not None
        total = float(expected_hashes(self.difficulty)) if self.difficulty else None
        done = min(float(reading.hashes), total * BAR_CAP) if total else 0.0
        if self._task is None:
            self._task = self._progress.add_task(reading.status, total=total, **fields)
        self._progress.update(
            self._task, description=reading.status, completed=done, total=total, **fields
        )

    def _due(self, reading: Reading) -> bool:
        """Plain lines: on a new status at once; otherwise when hashes moved, every so often."""
        now = time.monotonic()
        last = self._last
        if (
            last is not None
            and reading.status == last[1].status
            and (now - last[0] < self.every or reading.hashes == last[1].hashes)
        ):
            return False
        self._last = (now, reading)
        return True
