"""`pow-mcp solve`: find one proof now, on the local worker pool, with a progress bar."""

from __future__ import annotations

import argparse
import json
import queue
import sys
import time

from pow_mcp.pow.difficulty import eta_seconds
from pow_mcp.pow.pool import WorkerPool
from pow_mcp.pow.scheduler import Outcome, OutcomeKind, Progress, SearchTask
from pow_mcp.pow.scheme import structs_prefix, validate_prefix
from pow_mcp.server.cli.progress import ProgressDisplay, Reading


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


def _reading(p: Progress, difficulty: int) -> Reading:
    eta = eta_seconds(difficulty, p.hashes, p.hashrate)
    return Reading("running", p.hashes, p.hashrate, p.best_zeros, eta)


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
    try:
        # The bar goes to stderr: stdout carries the result, and may be piped.
        with ProgressDisplay(sys.stderr, args.difficulty) as display, pool:
            pool.submit("solve", task)
            while not isinstance(event := events.get(), Outcome):
                display.update(_reading(event, args.difficulty))
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
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
