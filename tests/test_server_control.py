"""Job control end to end, through the real server and the SDK client: pause and resume,
recovery after a crash, retries, dependencies, batches, filters, and the bad inputs."""

from __future__ import annotations

import hashlib
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client

from tests.chain import Chain
from tests.conftest import TIMING
from tests.mcp_helpers import (
    call,
    call_error,
    connect,
    jobs_file,
    server_goes_away,
    server_pids,
)
from tests.test_server_lifecycle import children_of
from tests.test_server_shared import cpu_used_over

Record = dict[str, Any]


async def status(client: Client, job_id: str) -> Record:
    return await call(client, "query_proof_of_work_status", job_id=job_id)


async def until(
    client: Client, job_id: str, check: Callable[[Record], bool], seconds: float = 60
) -> Record:
    """The job's record once `check` holds (waiting on the server between looks)."""
    with anyio.fail_after(seconds):
        while not check(record := await status(client, job_id)):
            await call(client, "wait_for_job", job_id=job_id, timeout_seconds=0.2)
    return record


def hashing(record: Record) -> bool:
    return record["status"] == "running" and record["progress"]["hashes"] > 0


def proof_of(record: Record, prefix: str) -> str:
    assert record["status"] == "completed", record
    proof = record["result"]["proof_of_work"]
    digest = hashlib.sha256(f"{prefix}{proof['nonce']}".encode()).hexdigest()
    assert digest == proof["hash"] and digest.startswith("0" * proof["difficulty"])
    return str(proof["nonce"])


# -- pause and resume -------------------------------------------------------------------------


@TIMING
async def test_pause_frees_the_workers_and_resume_continues(tmp_path: Path) -> None:
    async with connect(tmp_path) as client:
        job = await call(client, "start_proof_of_work", prefix="pause-", difficulty=64)
        job_id = job["job_id"]
        await until(client, job_id, hashing)
        (pid,) = server_pids(tmp_path)
        workers = children_of(pid)
        began = time.monotonic()
        paused = await call(client, "pause_job", job_id=job_id)
        assert time.monotonic() - began < 0.5  # the call returns once the workers are free
        assert paused["status"] == "paused" and paused["changed"] is True
        hashes = (await status(client, job_id))["progress"]["hashes"]
        assert hashes == paused["hashes"] > 0
        assert cpu_used_over(workers, 1.0) < 0.1  # nothing hashes while it is paused
        still = await status(client, job_id)
        assert still["status"] == "paused" and still["progress"]["hashes"] == hashes
        checkpoint = still["checkpoint"]
        assert checkpoint["position"] == hashes and checkpoint["in_flight"] == []

        again = await call(client, "pause_job", job_id=job_id)
        assert again["changed"] is False and "already paused" in again["message"]
        resumed = await call(client, "resume_job", job_id=job_id)
        assert resumed["changed"] is True and resumed["status"] in ("queued", "running")
        later = await until(client, job_id, lambda r: r["progress"]["hashes"] > hashes)
        assert later["status"] == "running"
        not_paused = await call(client, "resume_job", job_id=job_id)
        assert not_paused["changed"] is False and "not paused" in not_paused["message"]
        cancelled = await call(client, "cancel_job", job_id=job_id)
        assert cancelled["cancelled"] is True
        error = await call_error(client, "pause_job", job_id=job_id)
        assert "already ended (cancelled)" in error
        assert "no job with id" in await call_error(client, "resume_job", job_id="pow_1_nope")


async def test_a_paused_job_stays_paused_across_a_restart_and_resumes_from_its_checkpoint(
    tmp_path: Path,
) -> None:
    async with connect(tmp_path) as client:
        job = await call(client, "start_proof_of_work", prefix="again-", difficulty=64)
        await until(client, job["job_id"], hashing)
        paused = await call(client, "pause_job", job_id=job["job_id"])
    async with connect(tmp_path, JOBS_RECOVERY="fail") as client:
        record = await status(client, job["job_id"])
        assert record["status"] == "paused" and record["progress"]["hashes"] == paused["hashes"]
        await call(client, "resume_job", job_id=job["job_id"])
        moving = await until(
            client, job["job_id"], lambda r: r["progress"]["hashes"] > paused["hashes"]
        )
        assert moving["checkpoint"]["position"] > paused["hashes"]
        await call(client, "cancel_job", job_id=job["job_id"])


@TIMING
async def test_timeout_counts_running_time_only(tmp_path: Path) -> None:
    async with connect(tmp_path) as client:
        job = await call(
            client, "start_proof_of_work", prefix="clock-", difficulty=64, timeout_seconds=1.5
        )
        await until(client, job["job_id"], hashing)
        await call(client, "pause_job", job_id=job["job_id"])
        await anyio.sleep(2.0)  # paused far longer than the timeout: it must not count
        assert (await status(client, job["job_id"]))["status"] == "paused"
        await call(client, "resume_job", job_id=job["job_id"])
        done = await call(client, "wait_for_job", job_id=job["job_id"], timeout_seconds=30)
    assert done["status"] == "failed" and "timed out after 1.5 seconds" in done["error"]
    assert 1.5 <= done["run_seconds"] < 3.0


# -- recovery after a crash -------------------------------------------------------------------


async def test_a_job_resumes_after_a_crash_and_completes(tmp_path: Path) -> None:
    # hashlib is ~30x slower than the compiled kernels: the job cannot finish before the kill.
    slow = {"JOBS_RECOVERY": "resume", "POW_KERNEL": "hashlib"}
    with server_goes_away():
        async with connect(tmp_path, **slow) as client:
            job = await call(client, "start_proof_of_work", prefix="crash-", difficulty=7)
            job_id = job["job_id"]
            with anyio.fail_after(30):  # until some progress is on disk
                while not (saved := jobs_file(tmp_path)[job_id]["progress"]["hashes"]):
                    await call(client, "wait_for_job", job_id=job_id, timeout_seconds=0.1)
            (pid,) = server_pids(tmp_path)
            os.kill(pid, signal.SIGKILL)
            await client.list_tools()
    async with connect(tmp_path, JOBS_RECOVERY="resume") as client:
        done = await call(client, "wait_for_job", job_id=job_id, timeout_seconds=120)
    proof_of(done, "crash-")
    (recovery,) = done["recoveries"]
    assert recovery["from_status"] == "running" and recovery["hashes"] >= saved
    assert done["progress"]["hashes"] >= recovery["hashes"]
    outcomes = [a["outcome"] for a in done["attempts"]]
    assert outcomes == ["interrupted", "completed"]


async def test_a_graceful_stop_under_resume_keeps_jobs_without_counting_a_recovery(
    tmp_path: Path,
) -> None:
    async with connect(tmp_path, JOBS_RECOVERY="resume") as client:
        job = await call(client, "start_proof_of_work", prefix="quit-", difficulty=64)
        saved = await until(client, job["job_id"], hashing)
    # The client closed stdin, as Claude Desktop does on every quit.
    async with connect(tmp_path, JOBS_RECOVERY="resume") as client:
        record = await until(
            client,
            job["job_id"],
            lambda r: hashing(r) and r["progress"]["hashes"] > saved["progress"]["hashes"],
        )
        assert record["recoveries"] == []
        assert [a["outcome"] for a in record["attempts"]] == ["interrupted", None]
        await call(client, "cancel_job", job_id=job["job_id"])


async def test_too_many_recoveries_fail_the_job(tmp_path: Path) -> None:
    env = {"JOBS_RECOVERY": "resume", "JOBS_MAX_RECOVERIES": "1"}
    job_id = ""
    for _ in range(2):
        with server_goes_away():
            async with connect(tmp_path, **env) as client:
                if not job_id:
                    job = await call(client, "start_proof_of_work", prefix="twice-", difficulty=64)
                    job_id = job["job_id"]
                await until(client, job_id, hashing)
                (pid,) = server_pids(tmp_path)
                os.kill(pid, signal.SIGKILL)
                await client.list_tools()
    async with connect(tmp_path, **env) as client:
        record = await until(client, job_id, lambda r: r["status"] == "failed", 30)
    assert "JOBS_MAX_RECOVERIES=1" in record["error"] and len(record["recoveries"]) == 1


# -- retries ----------------------------------------------------------------------------------


async def test_a_retryable_failure_is_retried_from_the_checkpoint(
    tmp_path: Path, chain: tuple[Chain, str]
) -> None:
    state, url = chain
    state.height = 1002  # age 2: difficulty 46, nothing will meet it yet
    env = {
        "BLOCK_HEIGHT_URL": url,
        "BLOCK_TIME_SECONDS": "0.2",
        "BLOCK_HEIGHT_GRACE_SECONDS": "1",
        "TARGET_DIFFICULTY_START": "64",
    }
    async with connect(tmp_path, **env) as client:
        job = await call(
            client,
            "start_proof_of_work",
            action_type="struct_build_complete",
            entity_id="5-42",
            block_start=1000,
            difficulty_range=10,
            max_retries=1,
            retry_delay_seconds=2,
        )
        job_id = job["job_id"]
        await until(client, job_id, hashing)
        state.down = True  # the block height source goes away past its grace
        retried = await until(client, job_id, lambda r: r["status"] == "queued")
        first = retried["attempts"][0]
        assert first["outcome"] == "retried" and url in first["error"]
        assert retried["run_after"] is not None and retried["progress"]["hashes"] > 0
        state.down = False
        state.first, state.armed = 1003, True  # and now blocks pass: a proof comes quickly
        done = await call(client, "wait_for_job", job_id=job_id, timeout_seconds=60)
    proof_of(done, "5-42BUILD1000NONCE")
    assert [a["outcome"] for a in done["attempts"]] == ["retried", "completed"]
    # The second attempt went on from the first one's checkpoint: nothing counted twice.
    assert done["attempts"][1]["hashes"] >= 0
    assert done["progress"]["hashes"] >= retried["progress"]["hashes"]


# -- dependencies and batches ----------------------------------------------------------------


async def test_dependencies_block_then_start_or_fail(tmp_path: Path) -> None:
    async with connect(tmp_path) as client:
        hard = await call(client, "start_proof_of_work", prefix="hard-", difficulty=64)
        easy = await call(client, "start_proof_of_work", prefix="easy-", difficulty=3)
        after_both = await call(
            client,
            "start_proof_of_work",
            prefix="after-",
            difficulty=2,
            depends_on=[hard["job_id"], easy["job_id"]],
        )
        after_easy = await call(
            client, "start_proof_of_work", prefix="next-", difficulty=2, depends_on=[easy["job_id"]]
        )
        done = await call(client, "wait_for_job", job_id=after_easy["job_id"])
        proof_of(done, "next-")
        blocked = await status(client, after_both["job_id"])
        assert blocked["status"] == "queued" and blocked["blocked_by"] == [hard["job_id"]]
        await call(client, "cancel_job", job_id=hard["job_id"])
        failed = await call(client, "wait_for_job", job_id=after_both["job_id"])
        assert failed["status"] == "failed"
        assert failed["error"] == f"dependency {hard['job_id']} was cancelled"
        error = await call_error(
            client, "start_proof_of_work", prefix="x-", difficulty=1, depends_on=["pow_1_nope"]
        )
        assert "pow_1_nope" in error and "do not exist" in error
        assert (await call(client, "list_jobs"))["total"] == 4  # the refused one is not there


async def test_a_batch_starts_all_or_none_and_wait_for_jobs(tmp_path: Path) -> None:
    async with connect(tmp_path) as client:
        entries = [{"prefix": f"batch{i}-", "difficulty": 2, "tags": ["own"]} for i in range(3)] + [
            {
                "action_type": "ore_miner_complete",
                "entity_id": "5-1",
                "block_start": 7,
                "difficulty": 3,
            }
        ]
        batch = await call(client, "start_proof_of_work_batch", jobs=entries, tags=["b:1"])
        assert batch["batch_id"].startswith("batch_") and len(batch["job_ids"]) == 4
        notices: list[float] = []

        async def progress(done: float, total: float | None, message: str | None) -> None:
            notices.append(done)

        result = await client.call_tool(
            "wait_for_jobs",
            {"job_ids": batch["job_ids"], "timeout_seconds": 60},
            progress_callback=progress,
        )
        waited = result.structured_content
        assert waited is not None and waited["timed_out"] is False
        assert waited["done"] == batch["job_ids"]
        assert [j["job_id"] for j in waited["jobs"]] == batch["job_ids"]
        for i, record in enumerate(waited["jobs"][:3]):
            proof_of(record, f"batch{i}-")
            assert record["tags"] == ["b:1", "own"] and record["batch_id"] == batch["batch_id"]
        proof_of(waited["jobs"][3], "5-1MINE7NONCE")
        assert notices and notices[-1] == 4
        listed = await call(client, "list_jobs", batch_id=batch["batch_id"])
        assert listed["total"] == 4

        hard = await call(client, "start_proof_of_work", prefix="slow-", difficulty=64)
        easy = await call(client, "start_proof_of_work", prefix="quick-", difficulty=2)
        one = await call(
            client,
            "wait_for_jobs",
            job_ids=[hard["job_id"], easy["job_id"]],
            mode="any",
            timeout_seconds=60,
        )
        assert one["done"] == [easy["job_id"]] and one["timed_out"] is False
        none = await call(client, "wait_for_jobs", job_ids=[hard["job_id"]], timeout_seconds=0.3)
        assert none["done"] == [] and none["timed_out"] is True
        await call(client, "cancel_job", job_id=hard["job_id"])

        before = (await call(client, "list_jobs"))["total"]
        bad = [{"prefix": "ok-", "difficulty": 2}, {"prefix": "bad-", "difficulty": 70}]
        error = await call_error(client, "start_proof_of_work_batch", jobs=bad)
        assert "jobs[1].difficulty" in error and "64" in error
        both = [{"prefix": "x", "action_type": "ore_miner_complete", "difficulty": 2}]
        assert "jobs[0]" in await call_error(client, "start_proof_of_work_batch", jobs=both)
        assert "jobs" in await call_error(client, "start_proof_of_work_batch", jobs=[])
        many = [{"prefix": "m-", "difficulty": 1}] * 101
        assert "jobs" in await call_error(client, "start_proof_of_work_batch", jobs=many)
        assert (await call(client, "list_jobs"))["total"] == before  # nothing was created


async def test_list_jobs_filters_and_sorts(tmp_path: Path) -> None:
    async with connect(tmp_path) as client:
        low = await call(
            client, "start_proof_of_work", prefix="l-", difficulty=1, priority="low", tags=["x"]
        )
        await call(client, "wait_for_job", job_id=low["job_id"])
        crit = await call(
            client,
            "start_proof_of_work",
            prefix="c-",
            difficulty=64,
            priority="critical",
            tags=["x", "y"],
        )
        await call(client, "pause_job", job_id=crit["job_id"])  # it would take every worker
        mid = await call(client, "start_proof_of_work", prefix="m-", difficulty=1)
        await call(client, "wait_for_job", job_id=mid["job_id"])
        ids = [low["job_id"], crit["job_id"], mid["job_id"]]

        async def listed(**args: Any) -> list[str]:
            return [j["job_id"] for j in (await call(client, "list_jobs", **args))["jobs"]]

        assert await listed() == ids[::-1]
        assert await listed(order="asc") == ids
        assert await listed(sort_by="priority") == [ids[1], ids[2], ids[0]]
        assert await listed(status=["paused", "failed"]) == [ids[1]]
        assert await listed(status="completed") == [ids[2], ids[0]]
        assert await listed(tags=["x", "y"]) == [ids[1]]
        created = (await status(client, ids[1]))["created_at"]
        assert await listed(created_after=created) == [ids[2]]
        assert await listed(created_before=created) == [ids[0]]
        error = await call_error(client, "list_jobs", sort_by="size")
        assert "sort_by" in error and "priority" in error
        await call(client, "cancel_job", job_id=ids[1])


@pytest.mark.parametrize(
    ("arguments", "field"),
    [
        ({"prefix": "a", "difficulty": 3, "max_retries": 11}, "max_retries"),
        ({"prefix": "a", "difficulty": 3, "retry_delay_seconds": 4000}, "retry_delay_seconds"),
        ({"prefix": "a", "difficulty": True}, "difficulty"),
        ({"prefix": "a", "difficulty": "5"}, "difficulty"),
        ({"prefix": "a", "difficulty": 3, "tags": ["no spaces"]}, "tags"),
        ({"prefix": "a", "difficulty": 3, "tags": [f"t{i}" for i in range(17)]}, "tags"),
        ({"prefix": "a", "difficulty": 3, "label": "x" * 257}, "label"),
    ],
)
async def test_bad_job_arguments_name_the_field(
    tmp_path: Path, arguments: dict[str, Any], field: str
) -> None:
    async with connect(tmp_path) as client:
        error = await call_error(client, "start_proof_of_work", **arguments)
        assert field in error
        assert (await call(client, "list_jobs"))["total"] == 0
