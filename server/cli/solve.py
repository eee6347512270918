"""`pow-mcp solve`: find one proof now, on the local worker pool, with a progress line."""

from __future__ import annotations

import argparse
import json
import queue
import sys
import time
from typing import TextIO

from pow.difficulty import eta_seconds, expected_hashes
from pow.pool import WorkerPool
from pow.scheduler import Outcome, OutcomeKind, Progress, SearchTask
from pow.scheme import structs_prefix, validate_prefix


def _solve_prefix(parser: argparse.ArgumentParser, args: argparse.Namespace) -> str:
    try:
        if args.prefix is not None:
            if args.action or args.entity or args.target or args.block_start is not None:
                parser.error("give either --prefix or --action/--entity/--block-start, not both")
            return validate_prefix(args.prefix)
        if not (args.action and args.entity and args.block_start is not None):
            parser.error("give --prefix, or --action, --entity and --block-start")
        return structs_prefix(args.action, args.entity, args.block_start, args.target)
    except ValueError as exc:
        parser.error(str(exc))


def _clock(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    if seconds >= 86_400 * 365:
        return f"{seconds / 31_557_600:.3g} years"
    seconds = int(seconds)
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


class ProgressLine:
    """A one-line progress display on a terminal (a line every few seconds otherwise)."""

    def __init__(self, stream: TextIO, difficulty: int) -> None:
        self.stream, self.difficulty = stream, difficulty
        self.tty = stream.isatty()
        self.began = time.monotonic()
        self.shown = 0.0

    def update(self, p: Progress) -> None:
        now = time.monotonic()
        if now - self.shown < (0.1 if self.tty else 5.0):
            return
        self.shown = now
        share = min(p.hashes / expected_hashes(self.difficulty), 0.99)
        bar = "#" * int(share * 20)
        line = (
            f"[{bar:<20}] {p.hashes:,} hashes  {p.hashrate / 1e6:.2f} M/s  "
            f"best {p.best_zeros}/{self.difficulty} zeros  "
            f"elapsed {_clock(now - self.began)}  "
            f"ETA {_clock(eta_seconds(self.difficulty, p.hashes, p.hashrate))}"
        )
        self.stream.write(f"\r\x1b[K{line}" if self.tty else line + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self.tty and self.shown:
            self.stream.write("\r\x1b[K")
            self.stream.flush()


def _report(outcome: Outcome, prefix: str, difficulty: int, kernel: str, seconds: float) -> None:
    p = outcome.progress
    if outcome.kind is OutcomeKind.FOUND:
        data = {
            "prefix": prefix,
            "nonce": str(outcome.nonce),
            "hash": outcome.hash,
            "message": f"{prefix}{outcome.nonce}",
            "difficulty": difficulty,
            "leading_zeros": outcome.zeros,
            "hashes": p.hashes,
            "seconds": round(seconds, 3),
            "kernel": kernel,
        }
    else:
        data = {"error": outcome.error or outcome.kind.value, "hashes": p.hashes}
    print(json.dumps(data))


def solve(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    prefix = _solve_prefix(parser, args)
    try:
        task = SearchTask(prefix, args.difficulty, max_iterations=args.max_iterations)
    except ValueError as exc:
        parser.error(str(exc))
    events: queue.SimpleQueue[Progress | Outcome] = queue.SimpleQueue()
    try:
        pool = WorkerPool(lambda _job, e: events.put(e), workers=args.workers, kernel=args.kernel)
    except ValueError as exc:
        parser.error(str(exc))
    began = time.monotonic()
    display = ProgressLine(sys.stderr, args.difficulty)
    try:
        with pool:
            pool.submit("solve", task)
            while not isinstance(event := events.get(), Outcome):
                display.update(event)
    except KeyboardInterrupt:
        display.close()
        print("interrupted", file=sys.stderr)
        return 130
    display.close()
    seconds = time.monotonic() - began
    if args.json:
        _report(event, prefix, args.difficulty, pool.kernel_name, seconds)
    elif event.kind is OutcomeKind.FOUND:
        print(f"nonce:   {event.nonce}")
        print(f"hash:    {event.hash}")
        print(f"message: {prefix}{event.nonce}")
        print(
            f"{event.progress.hashes:,} hashes in {seconds:.2f} s "
            f"on {pool.size} workers ({pool.kernel_name})",
            file=sys.stderr,
        )
    else:
        print(f"no proof: {event.error}", file=sys.stderr)
    return 0 if event.kind is OutcomeKind.FOUND else 1
