"""The `pow-mcp` command: serve MCP (default), or `solve` / `bench` at a terminal."""

from __future__ import annotations

import argparse
import json
import logging
import queue
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

import anyio

from pow.bench import run as run_bench
from pow.difficulty import eta_seconds, expected_hashes
from pow.pool import WorkerPool
from pow.scheduler import Outcome, OutcomeKind, Progress, SearchTask
from pow.scheme import ActionType, structs_prefix, validate_prefix
from server.app import serve
from server.config import ConfigError, load_config
from store import StoreError

log = logging.getLogger("pow-mcp")


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pow-mcp",
        description="Proof-of-work job server for AI agents (MCP). "
        "Without a subcommand it serves MCP over stdio.",
    )
    serve = parser.add_argument_group("serving MCP (flags override the environment variables)")
    serve.add_argument("--transport", choices=["stdio", "http"], help="default: stdio")
    serve.add_argument("--host", help="HTTP bind address (default 127.0.0.1)")
    serve.add_argument("--port", type=_positive_int, help="HTTP port (default 8000)")
    serve.add_argument("--data-dir", help="directory of jobs.json (JOBS_DATA_DIR)")
    serve.add_argument("--workers", type=_positive_int, help="hashing processes (POW_WORKERS)")
    sub = parser.add_subparsers(dest="command", metavar="{solve,bench,claude-config}")

    solve = sub.add_parser("solve", help="find a proof of work now, with a progress bar")
    what = solve.add_argument_group("what to hash (either --prefix, or the Structs form)")
    what.add_argument("--prefix", help="message prefix; the nonce is appended in decimal")
    what.add_argument("--action", choices=[a.value for a in ActionType], help="Structs action")
    what.add_argument("--entity", help="Structs entity id (the fleet id for raids), e.g. 5-42")
    what.add_argument("--target", help="raided planet id (planet_raid_complete only)")
    what.add_argument("--block-start", type=_non_negative_int, help="block the action started")
    solve.add_argument(
        "--difficulty", type=int, required=True, help="leading hex zeros required (1-64)"
    )
    solve.add_argument("--max-iterations", type=_positive_int, help="give up after this many")
    solve.add_argument("--workers", type=_positive_int, help="worker processes (default: CPUs)")
    solve.add_argument("--kernel", help="search kernel (default: fastest available)")
    solve.add_argument("--json", action="store_true", help="print the result as JSON")

    sub.add_parser(
        "claude-config",
        help="print a Claude Desktop mcpServers entry for this installation",
    )

    bench = sub.add_parser("bench", help="measure hash rates of the kernels and the pool")
    bench.add_argument("--seconds", type=float, default=2.0, help="per measurement (default 2)")
    bench.add_argument("--workers", type=_positive_int, help="largest pool to measure")
    bench.add_argument("--rounds", type=_positive_int, default=3, help="best of (default 3)")
    return parser


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


def claude_config() -> dict[str, object]:
    """The `mcpServers` entry for Claude Desktop, with this installation's absolute paths."""
    command = Path(sys.argv[0]).resolve()
    if command.name != "pow-mcp":  # run as `python -m server.cli`
        command = Path(sys.executable).parent / "pow-mcp"
    data_dir = load_config().data_dir.resolve()
    return {
        "mcpServers": {
            "pow": {
                "command": str(command),
                "env": {"JOBS_DATA_DIR": str(data_dir), "PERSIST_JOBS": "true"},
            }
        }
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        stream=sys.stderr,
        level=logging.WARNING if args.command else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if args.command == "solve":
        return solve(parser, args)
    if args.command == "claude-config":
        print(json.dumps(claude_config(), indent=2))
        return 0
    if args.command == "bench":
        run_bench(args.seconds, args.workers, rounds=args.rounds)
        return 0
    return _serve(args)


def _serve(args: argparse.Namespace) -> int:
    try:
        config = load_config().with_overrides(
            transport=args.transport,
            host=args.host,
            port=args.port,
            data_dir=args.data_dir,
            workers=args.workers,
        )
    except ConfigError as exc:
        print(f"pow-mcp: {exc}", file=sys.stderr)
        return 2
    try:
        anyio.run(serve, config)
    except (StoreError, ConfigError) as exc:
        print(f"pow-mcp: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
