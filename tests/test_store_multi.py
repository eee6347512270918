"""Several instances on one store: in one process, and as real processes, on every
persistent backend (the JSON file, SQLite, PostgreSQL)."""

from __future__ import annotations

import os
import random
import signal
from pathlib import Path

import anyio
import anyio.lowlevel
import pytest

from pow_mcp.store import (
    JobQuery,
    JobRecord,
    JobStatus,
    Progress,
    StoreError,
    StoreSettings,
    connect,
    open_store,
)
from tests.conftest import PERSISTENT_KINDS
from tests.store_helpers import Lines, make_record, spawn

PERSISTENT = pytest.mark.parametrize("kind", PERSISTENT_KINDS, indirect=True)


async def everything(settings: StoreSettings) -> dict[str, JobRecord]:
    store = await connect(settings)
    try:
        page, total = await store.find(JobQuery(limit=1000))
        assert total == len(page)
        return {r.job_id: r for r in page}
    finally:
        await store.close()


# -- instances in one process (each holds its own locks and leases, as processes do) ---------


@PERSISTENT
async def test_random_concurrent_work_on_three_instances(store_settings: StoreSettings) -> None:
    rng = random.Random(7)
    final: dict[str, tuple[str, int]] = {}  # job id -> last (status, hashes) acknowledged
    deleted: set[str] = set()
    terminal_acked: set[str] = set()
    finishing: set[str] = set()  # a finish was asked for (it may land before it is acked)
    async with (
        open_store(store_settings) as a,
        open_store(store_settings) as b,
        open_store(store_settings) as c,
    ):
        stores = [a, b, c]

        async def job(store_index: int, steps: int, end: JobStatus) -> None:
            store = stores[store_index]
            record = make_record(owner=store.instance_id)
            await store.create([record])
            final[record.job_id] = ("queued", 0)
            record = record.model_copy(update={"status": JobStatus.RUNNING})
            assert await store.claim(record)
            final[record.job_id] = ("running", 0)
            for hashes in range(1, steps + 1):
                record = record.model_copy(update={"progress": Progress(hashes=hashes)})
                assert await store.save_progress([record]) == set()
                final[record.job_id] = ("running", hashes)
                await anyio.lowlevel.checkpoint()
            if end is not JobStatus.RUNNING:
                finishing.add(record.job_id)
                assert await store.finish(record.model_copy(update={"status": end}))
                final[record.job_id] = (end.value, steps)
                terminal_acked.add(record.job_id)

        async def cleaner() -> None:
            for _ in range(10):
                store = rng.choice(stores)
                for job_id in await store.delete_finished(0):
                    assert job_id in finishing  # never an unfinished job
                    deleted.add(job_id)
                await store.find(JobQuery(limit=5))
                await anyio.sleep(0.005)

        ends = [JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED, JobStatus.RUNNING]
        async with anyio.create_task_group() as tg:
            for _ in range(60):
                tg.start_soon(job, rng.randrange(3), rng.randint(0, 5), rng.choice(ends))
            tg.start_soon(cleaner)
    saved = await everything(store_settings)
    assert set(saved) == set(final) - deleted
    for job_id, record in saved.items():
        assert (record.status.value, record.progress.hashes) == final[job_id], job_id


@PERSISTENT
async def test_a_cleanup_elsewhere_is_never_undone(store_settings: StoreSettings) -> None:
    async with open_store(store_settings) as a, open_store(store_settings) as b:
        job = make_record(JobStatus.RUNNING, owner=a.instance_id)
        await a.create([job])
        done = job.model_copy(update={"status": JobStatus.COMPLETED})
        assert await a.finish(done)
        assert await b.delete_finished(0) == [job.job_id]
        # a's late writes about the job must not bring it back.
        assert await a.finish(done.model_copy(update={"status": JobStatus.FAILED})) is False
        assert await a.save_progress([done]) == {job.job_id}
        await a.create([make_record(owner=a.instance_id)])
        assert await a.get(job.job_id) is None and await b.get(job.job_id) is None


async def test_a_fixed_json_instance_id_is_refused_while_it_lives(tmp_path: Path) -> None:
    settings = StoreSettings(tmp_path, instance_id="server-1")
    async with open_store(settings):
        with pytest.raises(StoreError, match="in use"):
            async with open_store(settings):
                pass  # pragma: no cover
    async with open_store(settings):
        pass  # free again once the first one closed


# -- real processes --------------------------------------------------------------------------


@PERSISTENT
async def test_two_processes_creating_at_once_lose_nothing(
    store_settings: StoreSettings, tmp_path: Path
) -> None:
    per_child = 60
    log = tmp_path / "children.log"
    procs = [spawn("burst", store_settings, str(per_child), stderr=log) for _ in range(2)]
    try:
        outs = [Lines(p) for p in procs]
        for out in outs:
            ready = out.wait_for(lambda lines: any(x.startswith("READY") for x in lines), 30)
            assert ready, log.read_text()[-3000:]
        for proc in procs:
            assert proc.stdin is not None
            proc.stdin.write(b"GO\n")
            proc.stdin.flush()
        for out in outs:
            assert out.wait_for(lambda lines: "DONE" in lines, 60), log.read_text()[-3000:]
        for proc in procs:
            assert await anyio.to_thread.run_sync(proc.wait) == 0, log.read_text()[-3000:]
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    reported = {job_id for out in outs for job_id, _ in out.durable()}
    assert len(reported) == 2 * per_child
    saved = await everything(store_settings)
    assert set(saved) == reported
    assert {r.status for r in saved.values()} == {JobStatus.COMPLETED}
    assert len({r.owner for r in saved.values()}) == 2


@PERSISTENT
async def test_only_a_killed_processes_jobs_become_orphans(
    store_settings: StoreSettings, tmp_path: Path
) -> None:
    settings = StoreSettings(
        store_settings.data_dir, database_url=store_settings.database_url, lease_seconds=1.0
    )
    log = tmp_path / "children.log"
    victim, survivor = (spawn("hold", settings, "3", stderr=log) for _ in range(2))
    try:
        outs = [Lines(victim), Lines(survivor)]
        for out in outs:
            assert out.wait_for(lambda lines: "HOLDING" in lines, 30), log.read_text()[-3000:]
        victim_jobs, survivor_jobs = ({job_id for job_id, _ in out.durable()} for out in outs)
        assert len(victim_jobs) == len(survivor_jobs) == 3
        async with open_store(settings) as watcher:
            assert await watcher.orphans() == []  # both live: nobody's jobs are orphans
            os.kill(victim.pid, signal.SIGKILL)
            await anyio.to_thread.run_sync(victim.wait)
            with anyio.fail_after(30):  # the JSON file at once; databases once the lease ends
                while {r.job_id for r in await watcher.orphans()} != victim_jobs:
                    await watcher.wait_for_change()
            assert survivor.poll() is None
    finally:
        for proc in (victim, survivor):
            if proc.poll() is None:
                proc.kill()
            proc.wait()
