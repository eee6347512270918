"""The real MCP server hashing on a Dask cluster: POW_CLUSTER=local and tcp://HOST:PORT."""

from __future__ import annotations

import hashlib
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client

from pow_mcp.pow.kernels import available_kernels
from pow_mcp.server.config import ConfigError, load_config
from pow_mcp.server.lifecycle import open_cluster
from tests.dask_helpers import dask_processes, free_port
from tests.mcp_helpers import call, connect, server_goes_away, server_pids
from tests.test_pool import wait_for_exit
from tests.test_server_lifecycle import children_of, run_server

C_KERNEL = next(iter(available_kernels()))


def test_cluster_settings_are_read_and_checked() -> None:
    assert load_config({}).cluster is None
    config = load_config({"POW_CLUSTER": "tcp://10.0.0.5:8786"})
    assert (config.cluster, config.cluster_timeout_seconds) == ("tcp://10.0.0.5:8786", 300.0)
    assert load_config({"POW_CLUSTER": "local"}).cluster == "local"
    assert load_config({"POW_CLUSTER_TIMEOUT_SECONDS": "0"}).cluster_timeout_seconds == 0
    for bad in ("10.0.0.5:8786", "tcp://host", "http://host:8786", "tcp://:8786", "remote"):
        with pytest.raises(ConfigError, match="POW_CLUSTER"):
            load_config({"POW_CLUSTER": bad})
    with pytest.raises(ConfigError, match="POW_CLUSTER_TIMEOUT_SECONDS"):
        load_config({"POW_CLUSTER_TIMEOUT_SECONDS": "-1"})


async def test_without_the_dask_extra_pow_cluster_is_a_config_error_naming_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(
        sys.modules, "pow_mcp.pow.pool.dask", None
    )  # its import fails, as without Dask
    config = load_config({"POW_CLUSTER": "local"})
    with pytest.raises(ConfigError) as caught:
        async with open_cluster(config):
            pass
    message = str(caught.value)
    assert message.startswith("POW_CLUSTER=local needs Dask, pow-mcp's dask extra")
    assert "pip install '.[dask]'" in message and "unset POW_CLUSTER" in message


def test_an_unreachable_cluster_stops_the_server_with_one_line_naming_pow_cluster(
    tmp_path: Path,
) -> None:
    address = f"tcp://127.0.0.1:{free_port()}"  # nothing listens there
    proc = run_server(
        tmp_path, "--data-dir", str(tmp_path), POW_CLUSTER=address, POW_CLUSTER_TIMEOUT_SECONDS="1"
    )
    _, err = proc.communicate(input="", timeout=60)
    assert proc.returncode == 1, err
    assert "Traceback" not in err
    last = err.strip().splitlines()[-1]
    assert last.startswith(f"pow-mcp: POW_CLUSTER={address}: no Dask scheduler answered"), err
    assert "unset POW_CLUSTER" in last


def proof_ok(prefix: str, proof: dict[str, Any], difficulty: int) -> bool:
    """Checked from scratch with hashlib, not with the server's code."""
    digest = hashlib.sha256(f"{prefix}{proof['nonce']}".encode()).hexdigest()
    return proof["hash"] == digest and digest.startswith("0" * difficulty)


async def test_jobs_through_the_server_on_a_local_cluster_and_its_workers_die_with_it(
    tmp_path: Path,
) -> None:
    with server_goes_away():
        async with connect(tmp_path, POW_CLUSTER="local", POW_WORKERS="2") as client:
            generic = await call(client, "start_proof_of_work", prefix="mcp-dask-", difficulty=5)
            structs = await call(
                client,
                "start_proof_of_work",
                action_type="ore_miner_complete",
                entity_id="4-7",
                block_start=4321,
                difficulty=5,
            )
            for job, prefix in ((generic, "mcp-dask-"), (structs, "4-7MINE4321NONCE")):
                record = await call(
                    client, "wait_for_job", job_id=job["job_id"], timeout_seconds=60
                )
                assert record["status"] == "completed", record
                assert record["kernel"] == C_KERNEL  # the kernel the workers reported
                assert proof_ok(prefix, record["result"]["proof_of_work"], 5), record
            # SPEC, Processes: the local cluster's workers exit when the server is killed.
            await call(client, "start_proof_of_work", prefix="mcp-dask-orphan-", difficulty=64)
            (pid,) = server_pids(tmp_path)
            children = children_of(pid)
            assert len(children) >= 2
            os.kill(pid, signal.SIGKILL)
    assert await anyio.to_thread.run_sync(wait_for_exit, children, 3.0) == []


async def record_after(client: Client, job_id: str, seconds: float = 0.2) -> dict[str, Any]:
    """The job's record once it ends or `seconds` pass: a long poll, the server's own wait."""
    answer = await call(client, "wait_for_job", job_id=job_id, timeout_seconds=seconds)
    return answer


async def test_a_job_says_it_waits_for_a_lost_cluster_and_goes_on_when_it_returns(
    tmp_path: Path,
) -> None:
    with dask_processes(workers=1) as procs:
        async with connect(tmp_path, POW_CLUSTER=procs.address) as client:
            started = await call(
                client,
                "start_proof_of_work",
                prefix="mcp-outage-",
                difficulty=64,
                max_iterations=100_000_000,
            )
            job_id = started["job_id"]
            with anyio.fail_after(30):
                while (await record_after(client, job_id))["progress"]["hashes"] == 0:
                    pass
                procs.kill_workers()
                procs.kill_scheduler()
                while (record := await record_after(client, job_id))["progress"].get(
                    "note"
                ) is None:
                    pass
            assert record["status"] == "running"
            assert "waiting for the Dask cluster" in record["progress"]["note"]
            procs.start_scheduler()
            procs.start_worker()
            began = time.monotonic()
            record = await call(client, "wait_for_job", job_id=job_id, timeout_seconds=120)
    assert time.monotonic() - began < 60
    # It went on from its checkpoint: every position hashed once, the note gone.
    assert record["status"] == "failed" and "max_iterations reached" in record["error"]
    assert record["progress"]["hashes"] == 100_000_000
    assert record["checkpoint"]["position"] == 100_000_000
    assert record["checkpoint"]["in_flight"] == []
    assert record["progress"].get("note") is None
