"""An age-based Structs job against a local block-height server whose height advances."""

from __future__ import annotations

import hashlib
from pathlib import Path

import anyio

from pow_mcp.pow.difficulty import age_difficulty, first_valid_age
from tests.chain import Chain
from tests.mcp_helpers import call, connect


async def test_age_based_job_waits_then_hashes_then_completes(
    tmp_path: Path, chain: tuple[Chain, str]
) -> None:
    state, url = chain
    env = {"BLOCK_HEIGHT_URL": url, "BLOCK_TIME_SECONDS": "0.1", "TARGET_DIFFICULTY_START": "5"}
    async with connect(tmp_path, **env) as client:
        job = await call(
            client,
            "start_proof_of_work",
            action_type="struct_build_complete",
            entity_id="5-42",
            block_start=1000,
            difficulty_range=10,
        )
        assert job["status"] == "waiting"
        assert job["difficulty"] == 64  # the chain is still before block_start
        waiting = await call(client, "query_proof_of_work_status", job_id=job["job_id"])
        assert waiting["status"] == "waiting"
        info = waiting["waiting_info"]
        assert info["start_difficulty"] == 5 and info["current_difficulty"] == 64
        assert info["blocks_remaining"] == first_valid_age(5, 10) - info["current_age"]
        assert waiting["started_at"] is None

        state.armed = True  # blocks start to pass
        record = await call(client, "wait_for_job", job_id=job["job_id"], timeout_seconds=60)

    assert record["status"] == "completed", record
    proof = record["result"]["proof_of_work"]
    digest = hashlib.sha256(f"5-42BUILD1000NONCE{proof['nonce']}".encode()).hexdigest()
    assert proof["hash"] == digest
    zeros = len(digest) - len(digest.lstrip("0"))
    # It only hashed once the difficulty had fallen to the start threshold...
    assert record["started_at"] is not None and proof["difficulty"] <= 5
    # ...and completed as soon as its best hash was accepted at the current height.
    assert zeros >= proof["difficulty"]
    assert record["valid_from_block"] == 1000 + first_valid_age(zeros, 10)
    assert age_difficulty(record["valid_from_block"] - 1000, 10) <= zeros


async def test_auto_plans_from_the_rate_and_its_proof_is_valid_where_it_says(
    tmp_path: Path, chain: tuple[Chain, str]
) -> None:
    state, url = chain
    env = {"BLOCK_HEIGHT_URL": url, "BLOCK_TIME_SECONDS": "0.1"}  # TARGET_DIFFICULTY_START: auto
    action = {"action_type": "struct_build_complete", "entity_id": "5-42", "block_start": 1000}
    async with connect(tmp_path, **env) as client:
        job = await call(client, "start_proof_of_work", **action, difficulty_range=10)
        assert job["status"] == "waiting"
        plan = job["waiting_info"]
        assert plan["plan"] == "auto" and plan["start_block"] > 990
        # the target is what the chain accepts at the block the plan is sure of
        assert plan["target_zeros"] == age_difficulty(plan["valid_by_block"] - 1000, 10)
        assert plan["valid_by_block"] >= plan["expected_valid_block"] >= plan["start_block"]
        assert plan["blocks_remaining"] == plan["start_block"] - 990

        state.armed = True
        record = await call(client, "wait_for_job", job_id=job["job_id"], timeout_seconds=60)
        assert record["status"] == "completed", record
        proof = record["result"]["proof_of_work"]
        valid_from = record["valid_from_block"]
        zeros = proof["difficulty_met"]
        assert valid_from == 1000 + first_valid_age(zeros, 10)

        async def valid_at(height: int) -> bool:
            check = await call(
                client,
                "verify_proof_of_work",
                **action,
                difficulty_range=10,
                current_block_height=height,
                nonce=proof["nonce"],
                hash=proof["hash"],
            )
            return bool(check["valid"])

        assert await valid_at(valid_from)
        assert not await valid_at(valid_from - 1)


async def test_a_silent_height_source_keeps_the_plan_and_says_so(
    tmp_path: Path, chain: tuple[Chain, str]
) -> None:
    state, url = chain
    env = {"BLOCK_HEIGHT_URL": url, "BLOCK_TIME_SECONDS": "0.5"}
    async with connect(tmp_path, **env) as client:
        job = await call(
            client,
            "start_proof_of_work",
            action_type="struct_build_complete",
            entity_id="5-42",
            block_start=1000,
            difficulty_range=10,
        )
        planned = job["waiting_info"]["start_block"]
        state.down = True
        with anyio.fail_after(30):
            while True:
                record = await call(client, "wait_for_job", job_id=job["job_id"], timeout_seconds=1)
                note = (record["waiting_info"] or {}).get("note") or ""
                if "has not answered" in note:
                    break
        assert record["status"] == "waiting" and "extrapolated" in note
        assert record["waiting_info"]["start_block"] == planned
        await call(client, "cancel_job", job_id=job["job_id"])
