"""Every setting, declared once: its variable, flag, type, default and meaning.

`config.py` takes its defaults from here and `docs/generate_reference.py` writes the
configuration reference from it, so the documented defaults are the ones the server uses.
The texts are Markdown, as the reference shows them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class Setting:
    """One row of the configuration reference."""

    variable: str | None  # None: a flag only
    flags: tuple[str, ...]  # the CLI flags that set it too
    type: str  # path, boolean, url, number, integer, choice, text, host and port, switch
    default: str  # as users read it; one `literal` is the text the code parses
    meaning: str

    @property
    def plain_default(self) -> str | None:
        """The default as the variable would spell it, if it is one plain value."""
        match = re.fullmatch(r"`([^`]+)`", self.default)
        return match.group(1) if match else None


SETTINGS: tuple[Setting, ...] = (
    Setting(
        "JOBS_DATA_DIR",
        ("--data-dir",),
        "path",
        "`./data/jobs`, or the per-user data directory where that cannot be created (see "
        "Platforms)",
        "directory of `jobs.json` (and of a relative SQLite file); created (0700) if missing; "
        "if it cannot be created or written the server exits with a message naming it",
    ),
    Setting(
        "PERSIST_JOBS",
        (),
        "boolean",
        "`true`",
        "`false` (also `0`, `no`, `off`, any case) keeps jobs in memory only and writes "
        "nothing; cannot be combined with `JOBS_DATABASE_URL`",
    ),
    Setting(
        "JOBS_DATABASE_URL",
        ("--database-url",),
        "url",
        "unset",
        "a database instead of the JSON file: `sqlite:///jobs.db` (relative to the data "
        "directory), `sqlite:////abs/path/jobs.db`, or "
        "`postgresql://user:password@host:5432/dbname` (`postgres://` and "
        '`postgresql+psycopg://` too). See "Choosing a store"',
    ),
    Setting(
        "JOBS_LEASE_SECONDS",
        (),
        "number",
        "`15`",
        "databases: an instance renews its lease every third of this; a peer that missed its "
        "renewals this long is gone and its jobs are recovered",
    ),
    Setting(
        "JOBS_RECOVERY",
        (),
        "choice",
        "`fail`",
        "what becomes of jobs whose server died (or stopped): `fail` (failed, `Job was "
        "interrupted by system shutdown`) or `resume` (queued again, continuing from the "
        "checkpoint)",
    ),
    Setting(
        "JOBS_MAX_RECOVERIES",
        (),
        "integer",
        "`3`",
        "with `resume`: a job interrupted more often than this fails instead, saying so",
    ),
    Setting("POW_WORKERS", ("--workers",), "integer", "number of CPUs", "hashing worker processes"),
    Setting(
        "POW_CLUSTER",
        (),
        "url",
        "unset",
        "hash on a Dask cluster instead (the `dask` extra: `pip install '.[dask]'`): "
        "`tcp://HOST:PORT` of a `dask scheduler`, or `local` for a local Dask cluster of "
        '`POW_WORKERS` processes; unset, the local worker pool. See "Hashing on a cluster"',
    ),
    Setting(
        "POW_CLUSTER_TIMEOUT_SECONDS",
        (),
        "number",
        "`300`",
        "how long jobs wait for a cluster that went away (or has no workers) before their "
        "attempt fails, a retryable failure; also bounds the first connection, to at most 10 s",
    ),
    Setting(
        "JOBS_RETENTION_SECONDS",
        (),
        "number",
        "`3600`",
        "finished jobs older than this are removed by the periodic cleanup",
    ),
    Setting(
        "JOBS_SAVE_DEBOUNCE_SECONDS",
        (),
        "number",
        "`1.0`",
        "coalescing window for progress writes (every store): after a crash, at most this "
        "much hashing is done again",
    ),
    Setting(
        "BLOCK_HEIGHT_URL",
        (),
        "url",
        "unset",
        "HTTP(S) URL answering the current block height",
    ),
    Setting(
        "BLOCK_TIME_SECONDS",
        (),
        "number",
        "`5.0`",
        "expected block interval, to extrapolate heights",
    ),
    Setting(
        "BLOCK_HEIGHT_GRACE_SECONDS",
        (),
        "number",
        "`300`",
        "how long age-based jobs go on from the extrapolated height while `BLOCK_HEIGHT_URL` "
        "does not answer; then their attempt fails (a retryable failure)",
    ),
    # Also read by pow/policy.py (which cannot import server/), with the same default.
    Setting(
        "TARGET_DIFFICULTY_START",
        (),
        "choice",
        "`auto`",
        "when age-based jobs hash: `auto` plans each job from the measured hash rate (see "
        '"When age-based jobs start hashing"); a number N (1..64): once the difficulty is at '
        "most N",
    ),
    # Read by pow/kernels/__init__.py; the server passes it on only when set.
    Setting("POW_KERNEL", (), "text", "`auto`", "force a kernel (`hashlib` is always there)"),
    # Read by server/signals.py, store/jsonfile/locks.py and pow/worker.py (each layer on its
    # own, as pow and store cannot import server/).
    Setting(
        "POW_PORTABLE",
        (),
        "boolean",
        "unset",
        "for testing: `1` makes Linux take the code macOS and Windows take where Linux has "
        "its own (file locks, how workers notice the server died, stop signals; see "
        "Platforms)",
    ),
    Setting(None, ("--transport",), "choice", "`stdio`", "`stdio` or `http`"),
    Setting(
        None,
        ("--host", "--port"),
        "host and port",
        "`127.0.0.1`, `8000`",
        "where HTTP listens",
    ),
    Setting(
        "POW_MCP_TOKEN",
        (),
        "text",
        "unset",
        "HTTP: the bearer token every request needs (the principal `default`)",
    ),
    Setting(
        None,
        ("--token-file",),
        "path",
        "unset",
        "HTTP: `name:token` lines, one principal each (instead of `POW_MCP_TOKEN`)",
    ),
    Setting(
        "POW_MCP_OAUTH_ISSUER",
        (),
        "url",
        "unset",
        "HTTP: take OAuth access tokens from this issuer (its URL exactly as its metadata "
        'writes it) instead of static tokens; see "Behind an identity provider"',
    ),
    Setting(
        "POW_MCP_RESOURCE_URL",
        (),
        "url",
        "unset",
        "HTTP, with an issuer (and needed then): this server's URL as clients reach it, e.g. "
        "`https://pow.example.com/mcp`; tokens must name it in `aud`",
    ),
    Setting(
        "POW_MCP_OAUTH_JWKS_URL",
        (),
        "url",
        "the issuer metadata's `jwks_uri`",
        "HTTP, with an issuer: where its signing keys are, instead of reading its metadata",
    ),
    Setting(
        "POW_MCP_OAUTH_ADMIN_SCOPE",
        (),
        "text",
        "`pow:admin`",
        "HTTP, with an issuer: the scope whose tokens see and act on every principal's jobs",
    ),
    Setting(
        "POW_MCP_OAUTH_CLIENT_ID",
        (),
        "text",
        "unset",
        "HTTP, with an issuer: this server's client id there, to introspect opaque (non-JWT) "
        "tokens; needs a secret too",
    ),
    Setting(
        "POW_MCP_OAUTH_CLIENT_SECRET",
        (),
        "text",
        "unset",
        "that client's secret (no flag: a command line shows in `ps`)",
    ),
    Setting(
        "POW_MCP_OAUTH_CLIENT_SECRET_FILE",
        (),
        "path",
        "unset",
        "a file holding that secret, instead of `POW_MCP_OAUTH_CLIENT_SECRET`",
    ),
    Setting(
        "POW_MCP_ALLOWED_HOSTS",
        ("--allowed-host",),
        "text",
        "unset",
        "HTTP: more `Host` names to accept, comma-separated (the flag repeats)",
    ),
    Setting(
        None,
        ("--insecure-no-auth",),
        "switch",
        "off",
        "HTTP: serve a non-loopback address without tokens",
    ),
    Setting(
        "POW_MAX_ACTIVE_JOBS",
        (),
        "integer",
        "`1000`",
        "unfinished jobs per principal; one more start is a tool error",
    ),
)


def _defaults() -> dict[str, str]:
    return {
        s.variable: s.plain_default
        for s in SETTINGS
        if s.variable is not None and s.plain_default is not None
    }


# What an unset variable means, for those whose default is one plain value.
DEFAULTS: Mapping[str, str] = _defaults()
