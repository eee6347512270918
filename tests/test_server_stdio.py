"""End to end over stdio: the SDK's client against the real `pow-mcp` server process."""

from __future__ import annotations

import hashlib
from pathlib import Path

from tests.mcp_helpers import (
    call,
    call_error,
    connect,
    jobs_file,
    kill_server,
    server_goes_away,
    text_of,
)

TOOLS = {
    "start_proof_of_work",
    "query_proof_of_work_status",
    "cleanup_jobs",
    "list_jobs",
    "cancel_job",
    "wait_for_job",
    "verify_proof_of_work",
    "pause_job",
    "resume_job",
    "start_proof_of_work_batch",
    "wait_for_jobs",
}


def assert_real_proof(record: dict, message_prefix: str, difficulty: int) -> None:
    assert record["status"] == "completed", record
    proof = record["result"]["proof_of_work"]
    digest = hashlib.sha256(f"{message_prefix}{proof['nonce']}".encode()).hexdigest()
    assert proof["hash"] == digest
    assert digest.startswith("0" * difficulty)
    assert proof["valid"] is True and proof["difficulty"] == difficulty
    assert record["completed_at"] and record["started_at"]


async def test_tools_are_listed_with_schemas_and_true_annotations(tmp_path: Path) -> None:
    async with connect(tmp_path) as client:
        tools = {tool.name: tool for tool in (await client.list_tools()).tools}
    assert set(tools) == TOOLS
    for tool in tools.values():
        assert tool.description and tool.output_schema and tool.input_schema, tool.name
        a = tool.annotations
        assert a is not None
        assert None not in (a.read_only_hint, a.destructive_hint, a.idempotent_hint), tool.name
    read_only = {n for n, t in tools.items() if t.annotations and t.annotations.read_only_hint}
    assert read_only == {
        "query_proof_of_work_status",
        "list_jobs",
        "verify_proof_of_work",
        "wait_for_job",
        "wait_for_jobs",
    }
    assert all(tool.title for tool in tools.values())
    assert "start_proof_of_work" not in read_only and "cancel_job" not in read_only
    assert tools["cleanup_jobs"].annotations.destructive_hint  # type: ignore[union-attr]
    assert tools["cancel_job"].annotations.destructive_hint  # type: ignore[union-attr]
    for name in ("query_proof_of_work_status", "verify_proof_of_work", "cancel_job"):
        assert tools[name].annotations.idempotent_hint, name  # type: ignore[union-attr]
    difficulty = tools["start_proof_of_work"].input_schema["properties"]["difficulty"]
    assert "leading" in str(difficulty.get("description", difficulty))


STRUCTS = [
    ({"action_type": "struct_build_complete", "entity_id": "5-42"}, "5-42BUILD1000NONCE"),
    ({"action_type": "ore_miner_complete", "entity_id": "5-42"}, "5-42MINE1000NONCE"),
    ({"action_type": "ore_refinery_complete", "entity_id": "5-42"}, "5-42REFINE1000NONCE"),
    (
        {"action_type": "planet_raid_complete", "entity_id": "9-30", "target_id": "2-1"},
        "9-30@2-1RAID1000NONCE",
    ),
]


async def test_start_wait_gives_a_proof_hashlib_confirms_generic_and_structs(
    tmp_path: Path,
) -> None:
    async with connect(tmp_path) as client:
        started = await call(client, "start_proof_of_work", prefix="abc-", difficulty=4)
        assert started["status"] in ("queued", "running")
        assert started["expected_hashes"] == 16**4 and started["estimated_seconds"] > 0
        assert started["job_id"].startswith("pow_") and started["kernel"]
        record = await call(client, "wait_for_job", job_id=started["job_id"], timeout_seconds=60)
        assert record["timed_out"] is False
        assert_real_proof(record, "abc-", 4)
        for args, prefix in STRUCTS:
            job = await call(client, "start_proof_of_work", block_start=1000, difficulty=3, **args)
            assert job["prefix"] == prefix
            record = await call(client, "wait_for_job", job_id=job["job_id"], timeout_seconds=60)
            assert_real_proof(record, prefix, 3)
            assert record["job_data"]["action_type"] == args["action_type"]
            check = await call(
                client,
                "verify_proof_of_work",
                nonce=record["result"]["proof_of_work"]["nonce"],
                hash=record["result"]["proof_of_work"]["hash"],
                block_start=1000,
                difficulty=3,
                **args,
            )
            assert check["valid"] and check["hash_matches"]


async def test_a_completed_job_survives_a_restart(tmp_path: Path) -> None:
    async with connect(tmp_path) as client:
        job = await call(client, "start_proof_of_work", prefix="restart-", difficulty=3)
        done = await call(client, "wait_for_job", job_id=job["job_id"], timeout_seconds=60)
    async with connect(tmp_path) as client:
        again = await call(client, "query_proof_of_work_status", job_id=job["job_id"])
    assert again["status"] == "completed"
    assert again["result"] == done["result"]


async def test_a_job_running_when_the_server_is_sigkilled_comes_back_failed(
    tmp_path: Path,
) -> None:
    with server_goes_away():
        async with connect(tmp_path) as client:
            job = await call(client, "start_proof_of_work", prefix="doomed-", difficulty=64)
            kill_server(tmp_path)
            await client.list_tools()
    assert jobs_file(tmp_path)[job["job_id"]]["status"] in ("queued", "running")
    async with connect(tmp_path) as client:
        record = await call(client, "query_proof_of_work_status", job_id=job["job_id"])
    assert record["status"] == "failed"
    assert record["error"] == "Job was interrupted by system shutdown"
    assert record["completed_at"]


async def test_cancel_a_running_job(tmp_path: Path) -> None:
    async with connect(tmp_path) as client:
        job = await call(client, "start_proof_of_work", prefix="never-", difficulty=64)
        answer = await call(client, "cancel_job", job_id=job["job_id"])
        assert answer["cancelled"] is True and answer["status"] == "cancelled"
        record = await call(client, "query_proof_of_work_status", job_id=job["job_id"])
        assert record["status"] == "cancelled"
        again = await call(client, "cancel_job", job_id=job["job_id"])
        assert again["cancelled"] is False and again["status"] == "cancelled"
    assert jobs_file(tmp_path)[job["job_id"]]["status"] == "cancelled"


async def test_list_filters_and_pages_newest_first(tmp_path: Path) -> None:
    async with connect(tmp_path) as client:
        done = []
        for i in range(3):
            job = await call(client, "start_proof_of_work", prefix=f"list{i}-", difficulty=1)
            await call(client, "wait_for_job", job_id=job["job_id"])
            done.append(job["job_id"])
        busy = await call(client, "start_proof_of_work", prefix="busy-", difficulty=64)
        everything = await call(client, "list_jobs")
        assert everything["total"] == 4
        assert [j["job_id"] for j in everything["jobs"]] == [busy["job_id"], *reversed(done)]
        completed = await call(client, "list_jobs", status="completed")
        assert completed["total"] == 3 and all(j["nonce"] for j in completed["jobs"])
        page = await call(client, "list_jobs", status="completed", limit=2, offset=1)
        assert [j["job_id"] for j in page["jobs"]] == [done[1], done[0]]
        assert page["total"] == 3
        await call(client, "cancel_job", job_id=busy["job_id"])


async def test_cleanup_never_removes_active_jobs(tmp_path: Path) -> None:
    async with connect(tmp_path) as client:
        old = await call(client, "start_proof_of_work", prefix="old-", difficulty=1)
        await call(client, "wait_for_job", job_id=old["job_id"])
        busy = await call(client, "start_proof_of_work", prefix="busy-", difficulty=64)
        answer = await call(client, "cleanup_jobs", max_age_seconds=0)
        assert answer == {"removed": 1, "job_ids": [old["job_id"]]}
        remaining = await call(client, "list_jobs")
        assert [j["job_id"] for j in remaining["jobs"]] == [busy["job_id"]]
        await call_error(client, "query_proof_of_work_status", job_id=old["job_id"])
    assert old["job_id"] not in jobs_file(tmp_path)


BAD_CALLS = [
    ("start_proof_of_work", {"prefix": "abc-", "difficulty": 65}, "64"),
    ("start_proof_of_work", {"prefix": "abc-", "difficulty": 0}, "difficulty"),
    ("start_proof_of_work", {"prefix": "abc-"}, "exactly one of difficulty"),
    ("start_proof_of_work", {"prefix": "", "difficulty": 3}, "prefix"),
    ("start_proof_of_work", {"prefix": "a\nb", "difficulty": 3}, "control characters"),
    ("start_proof_of_work", {"prefix": "x" * 1025, "difficulty": 3}, "1024"),
    ("start_proof_of_work", {"difficulty": 3}, "no message to hash"),
    (
        "start_proof_of_work",
        {"prefix": "abc", "action_type": "ore_miner_complete", "entity_id": "1-1", "difficulty": 3},
        "not both",
    ),
    (
        "start_proof_of_work",
        {
            "action_type": "planet_raid_complete",
            "entity_id": "9-30",
            "block_start": 5,
            "difficulty": 3,
        },
        "target_id",
    ),
    (
        "start_proof_of_work",
        {"action_type": "teleport", "entity_id": "1", "block_start": 1, "difficulty": 3},
        "action_type",
    ),
    (
        "start_proof_of_work",
        {"prefix": "abc-", "difficulty_range": 1800, "block_start": 5},
        "current_block_height",
    ),
    (
        "start_proof_of_work",
        {"prefix": "abc-", "difficulty_range": 1, "block_start": 5, "current_block_height": 9},
        "difficulty_range",
    ),
    (
        "start_proof_of_work",
        {"prefix": "abc-", "difficulty": 3, "max_iterations": 0},
        "max_iterations",
    ),
    ("start_proof_of_work", {"prefix": "abc-", "difficulty": 3, "priority": "urgent"}, "priority"),
    ("query_proof_of_work_status", {"job_id": "pow_1_nonexistent"}, "no job with id"),
    ("query_proof_of_work_status", {"job_id": "../../etc/passwd"}, "malformed job_id"),
    ("wait_for_job", {"job_id": "pow_1_x", "timeout_seconds": 301}, "300"),
    ("cancel_job", {"job_id": "pow_1_nonexistent"}, "no job with id"),
    ("list_jobs", {"limit": 0}, "limit"),
    ("list_jobs", {"status": "done"}, "status"),
    ("cleanup_jobs", {"max_age_seconds": -1}, "max_age_seconds"),
    ("verify_proof_of_work", {"prefix": "abc-", "nonce": "007", "difficulty": 1}, "leading zeros"),
    ("verify_proof_of_work", {"prefix": "abc-", "nonce": "-5", "difficulty": 1}, "nonce"),
]


async def test_bad_arguments_are_tool_errors_and_change_nothing(tmp_path: Path) -> None:
    async with connect(tmp_path) as client:
        job = await call(client, "start_proof_of_work", prefix="keep-", difficulty=2)
        await call(client, "wait_for_job", job_id=job["job_id"])
        before = (tmp_path / "jobs.json").read_bytes()
        for tool, arguments, hint in BAD_CALLS:
            text = await call_error(client, tool, **arguments)
            assert hint.lower() in text.lower(), (tool, arguments, text)
            assert "Traceback" not in text
        listing = await call(client, "list_jobs")
        assert listing["total"] == 1
    assert (tmp_path / "jobs.json").read_bytes() == before


async def test_progress_notifications_arrive_during_wait(tmp_path: Path) -> None:
    seen: list[tuple[float, float | None, str | None]] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        seen.append((progress, total, message))

    async with connect(tmp_path) as client:
        job = await call(client, "start_proof_of_work", prefix="slow-", difficulty=64)
        result = await client.call_tool(
            "wait_for_job",
            {"job_id": job["job_id"], "timeout_seconds": 2},
            progress_callback=on_progress,
        )
        assert not result.is_error and result.structured_content
        assert result.structured_content["timed_out"] is True
        assert "Still not finished" in text_of(result)
        await call(client, "cancel_job", job_id=job["job_id"])
    assert len(seen) >= 2
    assert seen[-1][0] > seen[0][0]
    assert seen[-1][1] == float(16**64)
    assert all(message and job["job_id"] in message for _, _, message in seen)


async def test_resources_serve_jobs_as_json(tmp_path: Path) -> None:
    async with connect(tmp_path) as client:
        job = await call(client, "start_proof_of_work", prefix="res-", difficulty=2)
        await call(client, "wait_for_job", job_id=job["job_id"])
        listing = await client.read_resource("pow://jobs")
        one = await client.read_resource(f"pow://jobs/{job['job_id']}")
    assert job["job_id"] in listing.contents[0].text  # type: ignore[union-attr]
    assert '"completed"' in one.contents[0].text  # type: ignore[union-attr]
