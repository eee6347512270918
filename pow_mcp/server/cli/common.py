"""What the store commands (`db`, `jobs`) share: their store flags and exit statuses."""

from __future__ import annotations

import argparse
import sys

from pow_mcp.server.config import Config, ConfigError, load_config

OK, ERROR, USAGE = 0, 1, 2


def store_flags() -> argparse.ArgumentParser:
    """`--data-dir` and `--database-url`, accepted after the command too (`pow-mcp jobs list
    --data-dir X`). Their default is SUPPRESS so that, not given there, the value given
    before the command (or none) stands."""
    parent = argparse.ArgumentParser(add_help=False)
    group = parent.add_argument_group("the job store (default: JOBS_DATA_DIR, JOBS_DATABASE_URL)")
    group.add_argument(
        "--data-dir", default=argparse.SUPPRESS, help="directory of jobs.json (JOBS_DATA_DIR)"
    )
    group.add_argument(
        "--database-url",
        default=argparse.SUPPRESS,
        help="job store database, e.g. sqlite:///jobs.db (JOBS_DATABASE_URL)",
    )
    return parent


def store_config(args: argparse.Namespace, config: Config | None = None) -> Config | None:
    """The configuration with the store flags applied; None (after saying why on stderr) if
    it cannot work: a usage error."""
    try:
        return (config or load_config()).with_overrides(
            data_dir=args.data_dir, database_url=args.database_url
        )
    except ConfigError as exc:
        print(f"pow-mcp: {exc}", file=sys.stderr)
        return None
