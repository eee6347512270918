"""`pow-mcp jobs`: list, show, steer and watch the jobs of the configured store.

The command line never runs a job: the server process that owns a job runs it. Cancel,
pause and resume are store transitions; a server on the same store watches the store and
stops or continues the job within about a second. A job resumed here is handed to any
instance (`ANY_INSTANCE`): the first server on the store to look takes it over.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import anyio
from pydantic import BaseModel
from rich.console import Console

from pow_mcp.server.cli.common import ERROR, OK, USAGE, store_config, store_flags
from pow_mcp.server.cli.progress import ProgressDisplay, Reading
from pow_mcp.server.cli.render import jobs_table, print_record
from pow_mcp.server.config import Config
from pow_mcp.server.schemas import (
    CancelAnswer,
    CleanupAnswer,
    ControlAnswer,
    JobAnswer,
    ListAnswer,
    summary,
)
from pow_mcp.store import (
    FutureRecordError,
    JobNotFoundError,
    JobQuery,
    JobRecord,
    JobStatus,
    JobStore,
    StoreError,
    connect,
    open_store,
)
from pow_mcp.store.query import MAX_PAGE

RECHECK_SECONDS = 1.0  # `watch` reads the job at least this often, whatever the store says
WATCH_LINE_SECONDS = 2.0  # plain progress lines of `watch`, at most this often
ID_HELP = "a job id (pow-mcp jobs list shows them)"


class Refused(Exception):
    """The command cannot do what was asked (an unknown id, a job that has ended): exit 1."""


def add_parser(sub: Any) -> None:
    jobs = sub.add_parser(
        "jobs",
        help="list, show, cancel, pause, resume and watch the jobs of the job store",
        description="Act on the jobs of the configured store, safely while servers run on "
        "it; the servers run the jobs. Exit status: 0 done, 1 an error (an unknown id, a "
        "refused action), 2 a usage error.",
    )
    actions = jobs.add_subparsers(dest="jobs_command", metavar="ACTION", required=True)
    flags = [store_flags()]

    listing = actions.add_parser("list", parents=flags, help="a table of jobs, newest first")
    listing.add_argument(
        "--status",
        action="append",
        choices=[s.value for s in JobStatus],
        help="only jobs with this status (repeat for several)",
    )
    listing.add_argument(
        "--limit", type=_page_size, default=50, help=f"at most this many (1-{MAX_PAGE}; 50)"
    )
    output = listing.add_mutually_exclusive_group()
    output.add_argument("--json", action="store_true", help="print JSON, as list_jobs does")
    output.add_argument("-q", "--quiet", action="store_true", help="print only the job ids")

    show = actions.add_parser("show", parents=flags, help="one job's full record")
    show.add_argument("job_id", metavar="ID", help=ID_HELP)
    show.add_argument("--json", action="store_true", help="print the record as JSON")

    for verb, text in (
        ("cancel", "stop a job for good, wherever it runs"),
        ("pause", "stop a job, keeping its checkpoint (resume continues it)"),
        ("resume", "queue a paused job again, for any server on the store to run"),
    ):
        action = actions.add_parser(verb, parents=flags, help=text)
        action.add_argument("job_id", metavar="ID", help=ID_HELP)
        action.add_argument("--json", action="store_true", help="print the answer as JSON")

    watch = actions.add_parser(
        "watch", parents=flags, help="a live progress bar until the job ends"
    )
    watch.add_argument("job_id", metavar="ID", help=ID_HELP)
    watch.add_argument(
        "--json", action="store_true", help="print the final record as JSON (progress on stderr)"
    )

    cleanup = actions.add_parser(
        "cleanup", parents=flags, help="remove finished jobs older than the retention period"
    )
    cleanup.add_argument(
        "--older-than",
        type=_seconds,
        metavar="SECONDS",
        help="remove jobs that ended at least this long ago (default JOBS_RETENTION_SECONDS)",
    )
    cleanup.add_argument("--json", action="store_true", help="print JSON, as cleanup_jobs does")


def _page_size(text: str) -> int:
    value = int(text)
    if not 1 <= value <= MAX_PAGE:
        raise argparse.ArgumentTypeError(f"must be 1..{MAX_PAGE}, got {value}")
    return value


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not value >= 0:  # also refuses nan
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value


Action = Callable[[argparse.Namespace, Config, JobStore], Awaitable[int]]


def run(args: argparse.Namespace, config: Config | None = None) -> int:
    """Run `pow-mcp jobs ACTION`; returns the exit status."""
    config = store_config(args, config)
    if config is None:
        return USAGE
    actions: dict[str, Action] = {
        "list": _list,
        "show": _show,
        "cancel": _cancel,
        "pause": _pause,
        "resume": _resume,
        "watch": _watch,
        "cleanup": _cleanup,
    }
    action = actions[args.jobs_command]
    try:
        return anyio.run(_with_store, action, args, config)
    except BaseException as raised:  # what is not ours is raised again
        error = _unwrap(raised)
        if isinstance(error, KeyboardInterrupt):
            return 130
        if isinstance(error, JobNotFoundError):
            print(f"pow-mcp: {_unknown(args.job_id)}", file=sys.stderr)
        elif isinstance(error, FutureRecordError):
            print(f"pow-mcp: a job was written by a newer pow-mcp ({error})", file=sys.stderr)
        elif isinstance(error, Refused | StoreError):
            print(f"pow-mcp: {error}", file=sys.stderr)
        else:
            raise
        return ERROR


def _unwrap(error: BaseException) -> BaseException:
    """The one error inside the groups that task groups wrap it in."""
    while isinstance(error, BaseExceptionGroup) and len(error.exceptions) == 1:
        error = error.exceptions[0]
    return error


async def _with_store(action: Action, args: argparse.Namespace, config: Config) -> int:
    async with _opened(config, watching=args.jobs_command == "watch") as store:
        return await action(args, config, store)


@asynccontextmanager
async def _opened(config: Config, *, watching: bool) -> AsyncIterator[JobStore]:
    """The store as a command-line tool opens it: it owns no jobs and migrates nothing.
    `watching` also runs the store's watcher, which `wait_for_change` needs."""
    if not config.store.persist:
        raise Refused(
            "PERSIST_JOBS=false: jobs live only in the memory of the server that runs them, "
            "out of reach of the command line"
        )
    if watching:
        async with open_store(config.store, serving=False) as store:
            yield store
        return
    store = await connect(config.store, serving=False)
    try:
        yield store
    finally:
        await store.close()


def _unknown(job_id: str) -> str:
    return (
        f"no job with id {job_id!r}: `pow-mcp jobs list` shows the jobs (finished jobs are "
        "removed after JOBS_RETENTION_SECONDS)"
    )


async def _get(store: JobStore, job_id: str) -> JobRecord:
    record = await store.get(job_id)
    if record is None:
        raise Refused(_unknown(job_id))
    return record


def _print_json(model: BaseModel) -> None:
    print(json.dumps(model.model_dump(mode="json"), indent=2))


def _as_answer(record: JobRecord, timed_out: bool | None = None) -> JobAnswer:
    """The record as query_proof_of_work_status (timed_out None) or wait_for_job answer it."""
    return JobAnswer.model_validate({**record.model_dump(), "timed_out": timed_out})


# -- list ------------------------------------------------------------------------------------


async def _list(args: argparse.Namespace, config: Config, store: JobStore) -> int:
    statuses = frozenset(JobStatus(s) for s in args.status) if args.status else None
    records, total = await store.find(JobQuery(statuses=statuses, limit=args.limit))
    jobs = [summary(r) for r in records]
    if args.json:
        _print_json(ListAnswer(jobs=jobs, total=total, limit=args.limit, offset=0))
    elif args.quiet:
        for job in jobs:
            print(job.job_id)
    elif not jobs:
        which = " or ".join(args.status or []) + " " if args.status else ""
        print(f"no {which}jobs in {store.location}")
    else:
        console = Console(highlight=False)
        console.print(jobs_table(jobs, console.width))
        if total > len(jobs):
            print(f"{len(jobs)} of {total} jobs; --limit {MAX_PAGE} shows more")
    return OK


# -- show ------------------------------------------------------------------------------------


async def _show(args: argparse.Namespace, config: Config, store: JobStore) -> int:
    record = await _get(store, args.job_id)
    if args.json:
        _print_json(_as_answer(record))
    else:
        print_record(record, sys.stdout)
    return OK


# -- cancel, pause, resume -------------------------------------------------------------------


async def _cancel(args: argparse.Namespace, config: Config, store: JobStore) -> int:
    record, changed = await store.cancel(args.job_id)
    job_id, status = record.job_id, record.status
    if changed:
        message = f"Job {job_id} cancelled; the server running it stops it within a second."
    elif status is JobStatus.CANCELLED:
        message = f"Job {job_id} was already cancelled; nothing changed."
    else:
        message = f"Job {job_id} had already ended as {status.value}; nothing to cancel."
    answer = CancelAnswer(job_id=job_id, status=status, cancelled=changed, message=message)
    refused = not changed and status is not JobStatus.CANCELLED
    return _report(answer, message, args.json, refused)


async def _pause(args: argparse.Namespace, config: Config, store: JobStore) -> int:
    record, changed = await store.pause(args.job_id)
    if changed:
        message = (
            f"Job {record.job_id} is paused ({record.progress.hashes:,} hashes so far); the "
            f"server running it stops it within a second and keeps its checkpoint. "
            f"`pow-mcp jobs resume {record.job_id}` continues from there."
        )
    else:
        message = f"Job {record.job_id} was already paused; nothing changed."
    return _control(args, record, changed, message)


async def _resume(args: argparse.Namespace, config: Config, store: JobStore) -> int:
    record, changed = await store.resume(args.job_id)  # to any instance: see the docstring
    if changed:
        message = (
            f"Job {record.job_id} is queued again ({record.progress.hashes:,} hashes so "
            "far): the first server on this store to look takes it over and goes on from "
            "its checkpoint."
        )
    else:
        message = f"Job {record.job_id} is not paused ({record.status.value}); nothing changed."
    return _control(args, record, changed, message)


def _control(args: argparse.Namespace, record: JobRecord, changed: bool, message: str) -> int:
    if record.is_terminal:
        raise Refused(
            f"job {record.job_id} has already ended ({record.status.value}); only queued, "
            "waiting, running or paused jobs can be paused or resumed"
        )
    answer = ControlAnswer(
        job_id=record.job_id,
        status=record.status,
        changed=changed,
        message=message,
        hashes=record.progress.hashes,
    )
    return _report(answer, message, args.json, refused=False)


def _report(answer: BaseModel, message: str, as_json: bool, refused: bool) -> int:
    if as_json:
        _print_json(answer)
    if refused:
        print(f"pow-mcp: {message}", file=sys.stderr)
        return ERROR
    if not as_json:
        print(message)
    return OK


# -- cleanup ---------------------------------------------------------------------------------


async def _cleanup(args: argparse.Namespace, config: Config, store: JobStore) -> int:
    older_than = config.retention_seconds if args.older_than is None else args.older_than
    removed = await store.delete_finished(older_than)
    if args.json:
        _print_json(CleanupAnswer(removed=len(removed), job_ids=removed))
        return OK
    print(f"removed {len(removed)} finished jobs that ended at least {older_than:g} s ago")
    for job_id in removed:
        print(job_id)
    return OK


# -- watch -----------------------------------------------------------------------------------


class _Changes:
    """Whether the store may have changed since `arm`: a change between two looks at the
    job is never missed, as it would be by awaiting `wait_for_change` after each look."""

    def __init__(self, store: JobStore) -> None:
        self.store = store
        self._event = anyio.Event()

    async def pump(self) -> None:
        while True:
            await self.store.wait_for_change()
            self._event.set()

    def arm(self) -> None:
        self._event = anyio.Event()

    async def wait(self, seconds: float) -> None:
        with anyio.move_on_after(seconds):
            await self._event.wait()


async def _watch(args: argparse.Namespace, config: Config, store: JobStore) -> int:
    # With --json stdout carries the record, so the progress goes to stderr.
    stream = sys.stderr if args.json else sys.stdout
    changes = _Changes(store)
    async with anyio.create_task_group() as tg:
        tg.start_soon(changes.pump)
        record = await _get(store, args.job_id)
        with ProgressDisplay(stream, _target(record), every=WATCH_LINE_SECONDS) as display:
            while True:
                display.update(_reading(record))
                if record.is_terminal:
                    break
                await changes.wait(RECHECK_SECONDS)
                changes.arm()
                now = await store.get(args.job_id)
                if now is None:
                    raise Refused(f"job {args.job_id} was removed while being watched")
                record = now
        tg.cancel_scope.cancel()
    return _outcome(record, args.json)


def _target(record: JobRecord) -> int | None:
    """The zeros the job hashes for: its difficulty, or an age-based job's planned target."""
    difficulty = record.job_data.get("difficulty")
    if isinstance(difficulty, int):
        return difficulty
    info = record.waiting_info
    return (info.target_zeros or info.current_difficulty) if info else None


def _reading(record: JobRecord) -> Reading:
    p = record.progress
    running = record.status is JobStatus.RUNNING
    return Reading(
        status=record.status.value,
        hashes=p.hashes,
        hashrate=p.hashrate if running else 0.0,
        best_zeros=p.best_zeros,
        eta_seconds=p.eta_seconds if running else None,
        elapsed=record.run_seconds,
    )


def _outcome(record: JobRecord, as_json: bool) -> int:
    """The end of a watch: the proof (exit 0), or why there is none (exit 1)."""
    if as_json:
        _print_json(_as_answer(record, timed_out=False))
    proof = record.result.proof_of_work if record.result else None
    if record.status is not JobStatus.COMPLETED or proof is None:
        reason = f": {record.error}" if record.error else ""
        print(f"pow-mcp: job {record.job_id} ended {record.status.value}{reason}", file=sys.stderr)
        return ERROR
    if not as_json:
        print(f"job {record.job_id} completed after {record.progress.hashes:,} hashes")
        print(f"nonce:   {proof.nonce}")
        print(f"hash:    {proof.hash}")
        prefix = record.job_data.get("prefix")
        if prefix is not None:
            print(f"message: {prefix}{proof.nonce}")
    return OK
