"""`pow-mcp jobs` on every store, alone and beside a running server; `--version`; the
progress display of `solve`; shell completion. Most commands run in the test's process
(tests/cli_helpers.py); exit statuses, terminals and commands beside a server also as real
processes of `python -m pow_mcp.server.cli`."""

from __future__ import annotations

import json
import os
import pty
import re
import select
import shutil
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Any

import anyio
import jsonschema
import pytest
from anyio.streams.buffered import BufferedByteReceiveStream

from pow_mcp.server.schemas import CancelAnswer, CleanupAnswer, ControlAnswer, JobAnswer, ListAnswer
from pow_mcp.store import JobStatus, StoreSettings, connect
from tests.cli_helpers import CLI, cli_env, pow_mcp, pow_mcp_process, run_in_process
from tests.conftest import PERSISTENT_KINDS
from tests.mcp_helpers import ROOT, call, server_env
from tests.mcp_helpers import connect as connect_server
from tests.store_helpers import finished, make_record
from tests.test_server_control import hashing, until

PERSISTENT = pytest.mark.parametrize("kind", PERSISTENT_KINDS, indirect=True)


def answer_of(done: subprocess.CompletedProcess[str], model: Any) -> dict[str, Any]:
    """The JSON a command printed, checked against the schema of the tool answer it mirrors."""
    data: dict[str, Any] = json.loads(done.stdout)
    jsonschema.validate(data, model.model_json_schema())
    return data


async def seed(settings: StoreSettings, statuses: list[JobStatus]) -> list[str]:
    store = await connect(settings)
    try:
        records = [make_record(s, owner=store.instance_id) for s in statuses]
        records = [finished(r, r.status) if r.is_terminal else r for r in records]
        await store.create(records)
        return [r.job_id for r in records]
    finally:
        await store.close()


def test_version() -> None:
    expected = f"pow-mcp {metadata.version('pow-mcp')}\n"
    for flag in ("--version", "-V"):
        done = run_in_process([flag], os.environ)
        assert done.returncode == 0 and done.stdout == expected


def test_the_command_as_a_process_exits_with_its_status(tmp_path: Path) -> None:
    """What a shell sees of a real process: the exit statuses 0, 1 and 2, output on stdout,
    errors on stderr."""
    settings = StoreSettings(tmp_path)
    (job_id,) = anyio.run(seed, settings, [JobStatus.QUEUED])
    listed = pow_mcp_process(settings, "jobs", "list", "-q")
    assert listed.returncode == 0 and listed.stdout.split() == [job_id], listed.stderr
    unknown = pow_mcp_process(settings, "jobs", "show", "pow_1_nope")
    assert unknown.returncode == 1 and "no job with id 'pow_1_nope'" in unknown.stderr
    assert unknown.stdout == ""
    usage = pow_mcp_process(settings, "jobs", "list", "--limit", "0")
    assert usage.returncode == 2 and "usage:" in usage.stderr and usage.stdout == ""
    version = pow_mcp_process(settings, "--version")
    assert version.returncode == 0 and version.stdout == f"pow-mcp {metadata.version('pow-mcp')}\n"


# -- on each store, without a server -------------------------------------------------------


@PERSISTENT
def test_list_and_show(kind: str, store_settings: StoreSettings) -> None:
    statuses = [JobStatus.QUEUED, JobStatus.PAUSED, JobStatus.COMPLETED, JobStatus.FAILED]
    queued, paused, completed, failed = anyio.run(seed, store_settings, statuses)

    listed = answer_of(pow_mcp(store_settings, "jobs", "list", "--json"), ListAnswer)
    assert [j["job_id"] for j in listed["jobs"]] == [failed, completed, paused, queued]
    assert (listed["total"], listed["limit"], listed["offset"]) == (4, 50, 0)
    only = answer_of(
        pow_mcp(store_settings, "jobs", "list", "--status", "completed", "--json"), ListAnswer
    )
    assert [j["job_id"] for j in only["jobs"]] == [completed] and only["total"] == 1
    ids = pow_mcp(store_settings, "jobs", "list", "-q", "--status", "queued", "--status", "paused")
    assert ids.returncode == 0 and ids.stdout.split() == [paused, queued]
    page = answer_of(pow_mcp(store_settings, "jobs", "list", "--limit", "1", "--json"), ListAnswer)
    assert len(page["jobs"]) == 1 and page["total"] == 4

    table = pow_mcp(store_settings, "jobs", "list")
    assert table.returncode == 0, table.stderr
    header, *rows = table.stdout.splitlines()
    assert header.split()[:5] == ["ID", "STATUS", "HASHES", "DIFF", "AGE"]
    assert [row.split()[:2] for row in rows] == [
        [failed, "failed"],
        [completed, "completed"],
        [paused, "paused"],
        [queued, "queued"],
    ]
    for width in (60, 40):  # a narrow terminal: fewer columns, whole ids, no line too long
        narrow = pow_mcp(store_settings, "jobs", "list", COLUMNS=str(width)).stdout.splitlines()
        assert all(len(line) <= width for line in narrow), narrow
        assert [row.split()[0] for row in narrow[1:]] == [failed, completed, paused, queued]
    assert "ID" in narrow[0] and "AGE" not in narrow[0]

    shown = answer_of(pow_mcp(store_settings, "jobs", "show", completed, "--json"), JobAnswer)
    assert shown["job_id"] == completed and shown["status"] == "completed"
    assert shown["timed_out"] is None  # as query_proof_of_work_status answers
    text = pow_mcp(store_settings, "jobs", "show", failed)
    assert text.returncode == 0 and f"job:        {failed}" in text.stdout
    assert "status:     failed" in text.stdout

    unknown = pow_mcp(store_settings, "jobs", "show", "pow_1_nope")
    assert unknown.returncode == 1 and "no job with id 'pow_1_nope'" in unknown.stderr
    assert unknown.stdout == ""


@PERSISTENT
def test_cancel_pause_resume_cleanup(kind: str, store_settings: StoreSettings) -> None:
    statuses = [JobStatus.QUEUED, JobStatus.RUNNING, JobStatus.COMPLETED]
    queued, running, completed = anyio.run(seed, store_settings, statuses)

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return pow_mcp(store_settings, "jobs", *args)

    def stored(job_id: str) -> dict[str, Any]:
        return answer_of(run("show", job_id, "--json"), JobAnswer)

    paused = answer_of(run("pause", queued, "--json"), ControlAnswer)
    assert (paused["status"], paused["changed"]) == ("paused", True)
    assert stored(queued)["status"] == "paused"
    again = run("pause", queued)
    assert again.returncode == 0 and "already paused" in again.stdout

    resumed = answer_of(run("resume", queued, "--json"), ControlAnswer)
    assert (resumed["status"], resumed["changed"]) == ("queued", True)
    # Handed to any server on the store, not to the command line (which runs no job).
    assert stored(queued)["owner"] == "*"
    not_paused = run("resume", running)
    assert not_paused.returncode == 0 and "not paused (running)" in not_paused.stdout

    cancelled = answer_of(run("cancel", running, "--json"), CancelAnswer)
    assert (cancelled["status"], cancelled["cancelled"]) == ("cancelled", True)
    assert stored(running)["status"] == "cancelled"
    twice = run("cancel", running)
    assert twice.returncode == 0 and "already cancelled" in twice.stdout

    # Refused: the job has ended (exit 1, the reason on stderr, the store unchanged).
    ended = run("cancel", completed, "--json")
    assert ended.returncode == 1 and "already ended as completed" in ended.stderr
    assert answer_of(ended, CancelAnswer)["cancelled"] is False
    for verb in ("pause", "resume"):
        refused = run(verb, completed)
        assert refused.returncode == 1 and "has already ended (completed)" in refused.stderr
    assert stored(completed)["status"] == "completed"
    for verb in ("cancel", "pause", "resume", "watch"):
        missing = run(verb, "pow_1_nope")
        assert missing.returncode == 1 and "no job with id" in missing.stderr, verb

    kept = answer_of(run("cleanup", "--json"), CleanupAnswer)  # JOBS_RETENTION_SECONDS
    assert kept == {"removed": 0, "job_ids": []}
    removed = answer_of(run("cleanup", "--older-than", "0", "--json"), CleanupAnswer)
    assert sorted(removed["job_ids"]) == sorted([running, completed])
    assert [j["job_id"] for j in answer_of(run("list", "--json"), ListAnswer)["jobs"]] == [queued]
    plain = pow_mcp(store_settings, "jobs", "cleanup", JOBS_RETENTION_SECONDS="0")
    assert plain.returncode == 0 and plain.stdout.startswith("removed 0 finished jobs")


@pytest.mark.parametrize(
    "args",
    [
        ["jobs"],
        ["jobs", "frobnicate"],
        ["jobs", "show"],
        ["jobs", "list", "--status", "lost"],
        ["jobs", "list", "--limit", "0"],
        ["jobs", "list", "--json", "-q"],
        ["jobs", "cleanup", "--older-than", "-1"],
        ["jobs", "cleanup", "--older-than", "soon"],
        ["jobs", "pause"],
        ["completion", "tcsh"],
    ],
)
def test_usage_errors_exit_2(tmp_path: Path, args: list[str]) -> None:
    done = pow_mcp(StoreSettings(tmp_path), *args)
    assert done.returncode == 2 and "usage:" in done.stderr
    assert not (tmp_path / "jobs.json").exists()  # the store was not even opened


def test_a_store_the_command_line_cannot_reach_is_an_error(tmp_path: Path) -> None:
    memory = pow_mcp(StoreSettings(tmp_path), "jobs", "list", PERSIST_JOBS="false")
    assert memory.returncode == 1 and "PERSIST_JOBS=false" in memory.stderr
    bad_url = pow_mcp(StoreSettings(tmp_path, database_url="mysql://u:p@h/db"), "jobs", "list")
    assert bad_url.returncode == 2 and "unknown scheme" in bad_url.stderr
    away = StoreSettings(tmp_path, database_url="postgresql://u:p@127.0.0.1:1/db")
    gone = pow_mcp(away, "jobs", "list")
    assert gone.returncode == 1 and "Traceback" not in gone.stderr


def test_store_flags_after_the_command(tmp_path: Path) -> None:
    settings = StoreSettings(tmp_path / "elsewhere")
    (job_id,) = anyio.run(seed, settings, [JobStatus.QUEUED])
    env = server_env(tmp_path / "default")
    for args in (
        ["jobs", "list", "-q", "--data-dir", str(settings.data_dir)],
        ["--data-dir", str(settings.data_dir), "jobs", "list", "-q"],
    ):
        done = run_in_process(args, env)
        assert done.returncode == 0 and done.stdout.split() == [job_id], done.stderr


# -- beside a running server ---------------------------------------------------------------


def store_of(data_dir: Path, store_env: dict[str, str]) -> StoreSettings:
    return StoreSettings(data_dir, database_url=store_env.get("JOBS_DATABASE_URL"))


async def cli(settings: StoreSettings, *args: str) -> subprocess.CompletedProcess[str]:
    return await anyio.to_thread.run_sync(lambda: pow_mcp(settings, "jobs", *args))


async def test_the_command_line_steers_a_job_a_server_runs(
    tmp_path: Path, store_env: dict[str, str]
) -> None:
    settings = store_of(tmp_path, store_env)
    async with connect_server(tmp_path, **store_env) as client:
        job_id = (await call(client, "start_proof_of_work", prefix="cli-", difficulty=12))["job_id"]
        await until(client, job_id, hashing)

        paused = await cli(settings, "pause", job_id)
        assert paused.returncode == 0, paused.stderr
        # The server that runs the job sees the store change and stops it.
        record = await until(client, job_id, lambda r: r["status"] == "paused")
        hashes = record["progress"]["hashes"]
        assert hashes > 0 and record["checkpoint"]["position"] > 0

        resumed = await cli(settings, "resume", job_id)
        assert resumed.returncode == 0, resumed.stderr
        # The server takes the job over and goes on from its checkpoint.
        record = await until(
            client, job_id, lambda r: hashing(r) and r["progress"]["hashes"] > hashes
        )
        assert record["owner"] not in ("*", None)

        cancelled = await cli(settings, "cancel", job_id)
        assert cancelled.returncode == 0, cancelled.stderr
        record = await until(client, job_id, lambda r: r["status"] == "cancelled")
        assert record["error"] is None or "cancel" in record["error"].lower()


async def test_json_output_is_what_the_tools_return(
    tmp_path: Path, store_env: dict[str, str]
) -> None:
    settings = store_of(tmp_path, store_env)
    async with connect_server(tmp_path, **store_env) as client:
        job_id = (await call(client, "start_proof_of_work", prefix="same-", difficulty=3))["job_id"]
        record = await call(client, "wait_for_job", job_id=job_id)
        assert record["status"] == "completed"
        shown = json.loads((await cli(settings, "show", job_id, "--json")).stdout)
        assert shown == await call(client, "query_proof_of_work_status", job_id=job_id)
        listed = json.loads((await cli(settings, "list", "--json")).stdout)
        assert listed == await call(client, "list_jobs")
        watched = await cli(settings, "watch", job_id, "--json")
        assert watched.returncode == 0
        assert json.loads(watched.stdout) == record  # as wait_for_job answers (timed_out false)


async def test_watch_a_job_to_its_proof(tmp_path: Path, store_env: dict[str, str]) -> None:
    settings = store_of(tmp_path, store_env)
    async with connect_server(tmp_path, **store_env) as client:
        job_id = (await call(client, "start_proof_of_work", prefix="watch-", difficulty=4))[
            "job_id"
        ]
        watched = await cli(settings, "watch", job_id)
        record = await call(client, "query_proof_of_work_status", job_id=job_id)
    assert watched.returncode == 0, watched.stderr
    proof = record["result"]["proof_of_work"]
    lines = watched.stdout.splitlines()
    assert f"nonce:   {proof['nonce']}" in lines and f"hash:    {proof['hash']}" in lines
    assert f"message: watch-{proof['nonce']}" in lines
    assert "\r" not in watched.stdout and "\x1b" not in watched.stdout  # plain lines


async def line_matching(reader: BufferedByteReceiveStream, pattern: str) -> str:
    """The next line the process writes that matches `pattern`."""
    with anyio.fail_after(60):
        while True:
            line = (await reader.receive_until(b"\n", 1 << 16)).decode()
            if re.search(pattern, line):
                return line


async def test_watch_follows_pause_resume_and_cancel(
    tmp_path: Path, store_env: dict[str, str]
) -> None:
    settings = store_of(tmp_path, store_env)
    async with connect_server(tmp_path, **store_env) as client:
        job = await call(client, "start_proof_of_work", prefix="live-", difficulty=12)
        job_id = job["job_id"]
        env = cli_env(settings)
        async with await anyio.open_process(
            [*CLI, "jobs", "watch", job_id], cwd=ROOT, env=env
        ) as watch:
            assert watch.stdout is not None and watch.stderr is not None
            out = BufferedByteReceiveStream(watch.stdout)
            line = await line_matching(out, r"^running +[1-9][\d,]* hashes")
            assert re.search(r"M/s +best \d+/12 zeros +elapsed [\d:]+ +ETA ", line), line
            assert (await cli(settings, "pause", job_id)).returncode == 0
            await line_matching(out, r"^paused ")
            assert (await cli(settings, "resume", job_id)).returncode == 0
            await line_matching(out, r"^running ")
            assert (await cli(settings, "cancel", job_id)).returncode == 0
            with anyio.fail_after(60):
                code = await watch.wait()
                errors = b"".join([chunk async for chunk in watch.stderr]).decode()
        assert code == 1 and f"job {job_id} ended cancelled" in errors


# -- the live bar on a terminal -----------------------------------------------------------


def run_on_a_terminal(args: list[str], seconds: float = 120) -> tuple[int, str]:
    """Run with stdout and stderr on a pseudo-terminal; (exit status, all it drew)."""
    leader, follower = pty.openpty()
    proc = subprocess.Popen(
        [*CLI, *args],
        cwd=ROOT,
        env={**os.environ, "TERM": "xterm", "COLUMNS": "120"},
        stdin=subprocess.DEVNULL,
        stdout=follower,
        stderr=follower,
    )
    os.close(follower)
    drawn = b""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        ready, _, _ = select.select([leader], [], [], deadline - time.monotonic())
        try:
            chunk = os.read(leader, 65536) if ready else b""
        except OSError:  # the terminal closed: the process ended
            break
        if not chunk:
            break
        drawn += chunk
    os.close(leader)
    return proc.wait(timeout=30), drawn.decode(errors="replace")


def test_solve_draws_a_live_bar_on_a_terminal() -> None:
    code, drawn = run_on_a_terminal(
        ["solve", "--prefix", "bar-", "--difficulty", "9", "--max-iterations", "40000000"]
    )
    assert code in (0, 1), drawn  # a proof, or none within the iterations
    assert "━" in drawn and "M/s" in drawn and "best " in drawn and "ETA" in drawn
    assert "\x1b[" in drawn  # drawn in place, with cursor movements


def test_solve_prints_plain_lines_when_not_on_a_terminal() -> None:
    done = subprocess.run(
        [*CLI, "solve", "--prefix", "plain-", "--difficulty", "4", "--json"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["hash"].startswith("0000") and result["message"] == f"plain-{result['nonce']}"
    assert "\r" not in done.stderr and "\x1b" not in done.stderr


# -- shell completion ----------------------------------------------------------------------


def complete_in_bash(script: str, line: str, env: dict[str, str]) -> list[str]:
    """What TAB offers after `line` in bash, with `script` (what `completion bash` prints)."""
    words = line.split(" ")
    driver = (
        f"{script}\nCOMP_WORDS=({' '.join(map(_quoted, words))}); "
        f"COMP_CWORD={len(words) - 1}; _pow_mcp; printf '%s\\n' \"${{COMPREPLY[@]}}\""
    )
    done = subprocess.run(
        ["bash", "--norc", "-c", driver], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    return sorted(done.stdout.split())


def _quoted(word: str) -> str:
    return "'" + word.replace("'", "'\\''") + "'"


def test_bash_completion(tmp_path: Path) -> None:
    (job_id,) = anyio.run(seed, StoreSettings(tmp_path), [JobStatus.QUEUED])
    bin_dir = tmp_path / "bin"  # the installed `pow-mcp`, on PATH as a user has it
    bin_dir.mkdir()
    (bin_dir / "pow-mcp").symlink_to(Path(sys.executable).with_name("pow-mcp"))
    env = {**server_env(tmp_path), "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    script = run_in_process(["completion", "bash"], env)
    assert script.returncode == 0, script.stderr

    def complete(line: str) -> list[str]:
        return complete_in_bash(script.stdout, line, env)

    top = complete("pow-mcp ")
    assert {"jobs", "db", "solve", "bench", "claude-config", "completion"} <= set(top)
    assert complete("pow-mcp jobs ") == sorted(
        ["list", "show", "cancel", "pause", "resume", "watch", "cleanup"]
    )
    assert complete("pow-mcp jobs list --st") == ["--status"]
    assert complete("pow-mcp jobs list --status r") == ["running"]
    assert complete("pow-mcp --transport h") == ["http"]
    assert complete("pow-mcp jobs pause ") == [job_id]  # from the store
    assert complete("pow-mcp --data-dir x jobs show p") == [job_id]
    assert complete("pow-mcp completion ") == ["bash", "fish", "zsh"]
    assert "--os" not in complete("pow-mcp claude-config -")  # hidden


@pytest.mark.skipif(shutil.which("fish") is None, reason="fish is not installed")
def test_fish_completion(tmp_path: Path) -> None:
    script = tmp_path / "pow-mcp.fish"
    done = run_in_process(["completion", "fish"], os.environ)
    script.write_text(done.stdout)

    def offered(line: str) -> list[str]:
        run = subprocess.run(
            ["fish", "--no-config", "-c", f"source {script}; complete -C {_quoted(line)}"],
            capture_output=True,
            text=True,
            check=True,
        )
        return sorted(row.split("\t")[0] for row in run.stdout.splitlines())

    assert {"jobs", "db", "completion"} <= set(offered("pow-mcp "))
    assert "watch" in offered("pow-mcp jobs ") and "status" not in offered("pow-mcp jobs ")
    assert offered("pow-mcp jobs list --status r") == ["running"]


@pytest.mark.skipif(shutil.which("zsh") is None, reason="zsh is not installed")
def test_zsh_completion(tmp_path: Path) -> None:
    script = tmp_path / "pow-mcp.zsh"
    done = run_in_process(["completion", "zsh"], os.environ)
    script.write_text(done.stdout)

    def offered(*words: str) -> list[str]:
        """The candidates the script gives zsh (through bashcompinit, whose compadd then
        keeps those that start with the word being completed)."""
        call = (
            f"autoload -U compinit && compinit -u && source {script} && "
            f"COMP_WORDS=({' '.join(map(_quoted, words))}) && COMP_CWORD={len(words) - 1} && "
            "_pow_mcp && print -l -- $COMPREPLY"
        )
        run = subprocess.run(["zsh", "-f", "-c", call], capture_output=True, text=True)
        assert run.returncode == 0, run.stderr
        return run.stdout.split()

    assert sorted(offered("pow-mcp", "jobs", "")) == sorted(
        ["list", "show", "cancel", "pause", "resume", "watch", "cleanup"]
    )
    assert "running" in offered("pow-mcp", "jobs", "list", "--status", "r")
    assert "--status" in offered("pow-mcp", "jobs", "list", "--st")
