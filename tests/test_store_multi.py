"""Several store instances on one data directory: in one process, and as real processes."""

from __future__ import annotations

import os
import random
import signal
from pathlib import Path

import anyio
import anyio.lowlevel
import pytest

from store import INTERRUPTED_ERROR, JobStatus, Progress, StoreError, open_store
from store.locking import owner_alive
from tests.store_helpers import Lines, finished, make_record, raw_jobs, spawn

# -- instances in one process (each holds its own locks, exactly as processes do) -----------


async def test_instances_see_each_others_jobs(tmp_path: Path) -> None:
    async with (
        open_store(tmp_path, persist=True, debounce_seconds=3600) as a,
        open_store(tmp_path, persist=True, debounce_seconds=3600) as b,
    ):
        assert a.instance_id != b.instance_id
        mine = await a.create(make_record(JobStatus.RUNNING))
        theirs = await b.create(make_record())
        seen = await b.get(mine.job_id)
        assert seen is not None and seen.owner == a.instance_id
        _, total = await a.list()
        assert total == 2
        await a.update(finished(mine))
        done = await b.get(mine.job_id)
        assert done is not None and done.status is JobStatus.COMPLETED
        assert set(raw_jobs(tmp_path)) == {mine.job_id, theirs.job_id}


async def test_concurrent_creates_from_two_instances_lose_nothing(tmp_path: Path) -> None:
    async with (
        open_store(tmp_path, persist=True, debounce_seconds=0.01) as a,
        open_store(tmp_path, persist=True, debounce_seconds=0.01) as b,
    ):
        records = [make_record(JobStatus.RUNNING) for _ in range(60)]

        async def run(store_index: int, index: int) -> None:
            store = (a, b)[store_index]
            record = await store.create(records[index])
            running = record.model_copy(update={"progress": Progress(hashes=index)})
            await store.update(running)
            await store.update(finished(running))

        async with anyio.create_task_group() as tg:
            for index in range(len(records)):
                tg.start_soon(run, index % 2, index)
    saved = raw_jobs(tmp_path)
    assert set(saved) == {r.job_id for r in records}
    assert {r["status"] for r in saved.values()} == {"completed"}
    assert {r["progress"]["hashes"] for r in saved.values()} == set(range(60))


async def test_a_write_never_carries_stale_copies_of_other_instances_jobs(tmp_path: Path) -> None:
    async with (
        open_store(tmp_path, persist=True, debounce_seconds=3600) as a,
        open_store(tmp_path, persist=True, debounce_seconds=3600) as b,
    ):
        job = await a.create(make_record(JobStatus.RUNNING))
        assert await b.get(job.job_id) is not None  # b has a (soon stale) copy
        await a.update(job.model_copy(update={"progress": Progress(hashes=77)}))
        await a.flush()
        await b.create(make_record())  # b writes the whole file
        assert raw_jobs(tmp_path)[job.job_id]["progress"]["hashes"] == 77


async def test_a_cleanup_elsewhere_is_never_undone(tmp_path: Path) -> None:
    async with (
        open_store(tmp_path, persist=True, debounce_seconds=3600) as a,
        open_store(tmp_path, persist=True, debounce_seconds=3600) as b,
    ):
        job = await a.create(make_record(JobStatus.RUNNING))
        await a.update(finished(job))
        assert await b.delete_terminal_older_than(0) == [job.job_id]
        # a has not looked since: a late terminal-to-terminal update from its stale view
        # and a write of its own must not bring the job back.
        assert await a.update(finished(job, JobStatus.FAILED)) is True
        assert job.job_id not in raw_jobs(tmp_path)
        await a.create(make_record())
        assert job.job_id not in raw_jobs(tmp_path)
        assert await a.get(job.job_id) is None


async def test_a_final_status_written_elsewhere_wins(tmp_path: Path) -> None:
    async with (
        open_store(tmp_path, persist=True, debounce_seconds=3600) as a,
        open_store(tmp_path, persist=True, debounce_seconds=3600) as b,
    ):
        job = await a.create(make_record(JobStatus.RUNNING))
        seen = await b.get(job.job_id)
        assert seen is not None
        await b.update(finished(seen, JobStatus.CANCELLED))
        # a has not looked yet and reports progress from its stale view.
        await a.update(job.model_copy(update={"progress": Progress(hashes=5)}))
        shown = await a.get(job.job_id)  # a re-reads: the final status hides its progress
        assert shown is not None and shown.status is JobStatus.CANCELLED
        await a.flush()
        assert raw_jobs(tmp_path)[job.job_id]["status"] == "cancelled"


async def test_only_jobs_of_gone_instances_are_interrupted(tmp_path: Path) -> None:
    async with open_store(tmp_path, persist=True) as a:
        alive_job = await a.create(make_record(JobStatus.RUNNING))
        async with open_store(tmp_path, persist=True) as b:
            stopped_job = await b.create(make_record(JobStatus.RUNNING))
        # b closed, a lives on: a newcomer fails b's job and keeps a's.
        async with open_store(tmp_path, persist=True) as c:
            assert owner_alive(tmp_path / "instances", a.instance_id)
            assert not owner_alive(tmp_path / "instances", b.instance_id)
            interrupted = await c.get(stopped_job.job_id)
            assert interrupted is not None and interrupted.error == INTERRUPTED_ERROR
            running = await c.get(alive_job.job_id)
            assert running is not None and running.status is JobStatus.RUNNING
        await a.update(finished(alive_job))  # a's own job finishes normally
    saved = raw_jobs(tmp_path)
    assert saved[alive_job.job_id]["status"] == "completed"


async def test_a_fixed_instance_id_reused_after_a_stop(tmp_path: Path) -> None:
    async with open_store(tmp_path, persist=True, instance_id="server-1") as first:
        job = await first.create(make_record(JobStatus.RUNNING))
        with pytest.raises(StoreError, match="in use"):
            async with open_store(tmp_path, persist=True, instance_id="server-1"):
                pass  # pragma: no cover
    async with open_store(tmp_path, persist=True, instance_id="server-1") as second:
        again = await second.get(job.job_id)
        assert again is not None and again.error == INTERRUPTED_ERROR  # its old self is gone


async def test_random_concurrent_work_on_three_instances(tmp_path: Path) -> None:
    rng = random.Random(7)
    final: dict[str, tuple[str, int]] = {}  # job id -> last (status, hashes) acknowledged
    deleted: set[str] = set()
    terminal_acked: set[str] = set()
    async with (
        open_store(tmp_path, persist=True, debounce_seconds=0.01) as a,
        open_store(tmp_path, persist=True, debounce_seconds=0.01) as b,
        open_store(tmp_path, persist=True, debounce_seconds=0.01) as c,
    ):
        stores = [a, b, c]

        async def job(store_index: int, steps: int, end: JobStatus) -> None:
            store = stores[store_index]
            record = await store.create(make_record(JobStatus.QUEUED))
            final[record.job_id] = ("queued", 0)
            for hashes in range(1, steps + 1):
                record = record.model_copy(
                    update={"status": JobStatus.RUNNING, "progress": Progress(hashes=hashes)}
                )
                await store.update(record)
                final[record.job_id] = ("running", hashes)
                await anyio.lowlevel.checkpoint()
            if end is not JobStatus.RUNNING:
                await store.update(finished(record, end))
                final[record.job_id] = (end.value, steps)
                terminal_acked.add(record.job_id)

        async def cleaner() -> None:
            for _ in range(10):
                store = rng.choice(stores)
                for job_id in await store.delete_terminal_older_than(0):
                    assert job_id in terminal_acked  # never an unfinished job
                    deleted.add(job_id)
                await store.list(limit=5)
                await anyio.sleep(0.005)

        ends = [JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED, JobStatus.RUNNING]
        async with anyio.create_task_group() as tg:
            for _ in range(90):
                tg.start_soon(job, rng.randrange(3), rng.randint(0, 6), rng.choice(ends))
            tg.start_soon(cleaner)
    saved = raw_jobs(tmp_path)
    assert set(saved) == set(final) - deleted
    for job_id, record in saved.items():
        assert (record["status"], record["progress"]["hashes"]) == final[job_id], job_id


# -- real processes --------------------------------------------------------------------------


async def test_two_processes_creating_at_once_lose_nothing(tmp_path: Path) -> None:
    per_child = 150
    log = tmp_path / "children.log"
    procs = [spawn("burst", tmp_path / "jobs", str(per_child), stderr=log) for _ in range(2)]
    try:
        outs = [Lines(p) for p in procs]
        for out in outs:
            assert out.wait_for(lambda lines: any(x.startswith("READY") for x in lines), 30)
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
    reported = {job_id for out in outs for job_id, status in out.durable()}
    assert len(reported) == 2 * per_child
    saved = raw_jobs(tmp_path / "jobs")
    assert set(saved) == reported
    assert {r["status"] for r in saved.values()} == {"completed"}
    assert len({r["owner"] for r in saved.values()}) == 2


async def test_a_killed_process_is_interrupted_only_by_a_later_instance(tmp_path: Path) -> None:
    data_dir = tmp_path / "jobs"
    log = tmp_path / "children.log"
    victim, survivor = (spawn("hold", data_dir, "3", stderr=log) for _ in range(2))
    try:
        outs = [Lines(victim), Lines(survivor)]
        for out in outs:
            assert out.wait_for(lambda lines: "HOLDING" in lines, 30), log.read_text()[-3000:]
        victim_jobs, survivor_jobs = ({job_id for job_id, _ in out.durable()} for out in outs)
        assert len(victim_jobs) == len(survivor_jobs) == 3

        # While both live, a newcomer interrupts nothing.
        async with open_store(data_dir, persist=True):
            pass
        assert {r["status"] for r in raw_jobs(data_dir).values()} == {"running"}

        os.kill(victim.pid, signal.SIGKILL)
        await anyio.to_thread.run_sync(victim.wait)
        # The survivor does not touch the dead one's jobs ...
        assert {r["status"] for r in raw_jobs(data_dir).values()} == {"running"}
        # ... an instance started after the death does, and only those.
        async with open_store(data_dir, persist=True) as later:
            for job_id in victim_jobs:
                record = await later.get(job_id)
                assert record is not None and record.status is JobStatus.FAILED
                assert record.error == INTERRUPTED_ERROR
            for job_id in survivor_jobs:
                record = await later.get(job_id)
                assert record is not None and record.status is JobStatus.RUNNING
        assert survivor.poll() is None
    finally:
        for proc in (victim, survivor):
            if proc.poll() is None:
                proc.kill()
            proc.wait()
    instance_files = {p.stem for p in (data_dir / "instances").iterdir()}
    assert len(instance_files) <= 1  # the dead instance's lock file was cleaned up
