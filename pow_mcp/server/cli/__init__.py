"""The `pow-mcp` command: serve MCP (default), or act at a terminal: `solve`, `bench`, `db`,
`jobs`, `claude-config`, `completion`.

One framework for every command: argparse. It needs no dependency, the `db` and `solve`
commands were written for it, and `completion` writes the shell scripts from the parser.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path

import anyio

from pow_mcp.pow.scheme import ActionType
from pow_mcp.server.cli import claude, completion, db, jobs
from pow_mcp.server.cli.solve import solve
from pow_mcp.server.config import ConfigError, load_config
from pow_mcp.store import StoreError

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
    # The server's flags, one add_argument each: longer than 60 lines, flat, and in --help order.
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
    serve.add_argument(
        "--database-url", help="job store database, e.g. sqlite:///jobs.db (JOBS_DATABASE_URL)"
    )
    serve.add_argument(
        "--token-file", help="HTTP: bearer tokens, one name:token line per principal"
    )
    serve.add_argument(
        "--allowed-host",
        action="append",
        metavar="HOST[:PORT]",
        help="HTTP: another Host name to accept (repeatable; POW_MCP_ALLOWED_HOSTS)",
    )
    serve.add_argument(
        "--insecure-no-auth",
        action="store_true",
        default=None,
        help="HTTP: serve a non-loopback address without tokens (anyone reaching it may "
        "start, read and cancel jobs)",
    )
    parser.add_argument("-V", "--version", action="version", version=f"pow-mcp {version()}")
    sub = parser.add_subparsers(
        dest="command", metavar="{solve,bench,db,jobs,claude-config,completion}"
    )
    db.add_parser(sub)
    jobs.add_parser(sub)

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

    claude.add_parser(sub)
    completion.add_parser(sub)

    bench = sub.add_parser("bench", help="measure hash rates of the kernels and the pool")
    bench.add_argument("--seconds", type=float, default=2.0, help="per measurement (default 2)")
    bench.add_argument("--workers", type=_positive_int, help="largest pool to measure")
    bench.add_argument("--rounds", type=_positive_int, default=3, help="best of (default 3)")
    return parser


def version() -> str:
    """This installation's version, from its package metadata."""
    try:
        return metadata.version("pow-mcp")
    except metadata.PackageNotFoundError:  # run from a checkout that was never installed
        return "unknown (not installed)"


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
        return claude.run(args)
    if args.command == "completion":
        return completion.run(parser, args)
    if args.command == "jobs":
        return jobs.run(args)
    if args.command == "bench":
        from pow_mcp.pow.bench import run as run_bench  # a terminal command: spare the others

        run_bench(args.seconds, args.workers, rounds=args.rounds)
        return 0
    if args.command == "db":
        return db.run(args)
    return _serve(args)


def _waiting_hint() -> str:
    """Started from a terminal, the server would look like it hangs: say what it waits for."""
    command = sys.argv[0] if Path(sys.argv[0]).name == "pow-mcp" else "pow-mcp"
    return (
        "pow-mcp is waiting for an MCP client on stdin/stdout (Ctrl-C stops it). An MCP "
        "client starts it by itself (see `pow-mcp claude-config`); to try it by hand: "
        f"npx @modelcontextprotocol/inspector {command}"
    )


def _serve(args: argparse.Namespace) -> int:
    try:
        config = load_config().with_overrides(
            transport=args.transport,
            host=args.host,
            port=args.port,
            data_dir=args.data_dir,
            database_url=args.database_url,
            workers=args.workers,
            token_file=args.token_file,
            allowed_hosts=args.allowed_host,
            insecure_no_auth=args.insecure_no_auth,
        )
    except ConfigError as exc:
        print(f"pow-mcp: {exc}", file=sys.stderr)
        return 2
    if config.transport == "stdio" and sys.stdin.isatty():
        print(_waiting_hint(), file=sys.stderr)
    # The MCP stack only to serve, and after the configuration is found good: most of a
    # second, which a refused start and the terminal commands need not spend.
    from pow_mcp.server.app import serve

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
