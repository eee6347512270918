"""The store, model-checked: random sequences of its named operations on every backend,
compared after each step with a small model of what the contract says.

The model (`Model`) is plain Python: a job is its status, owner, progress and proof. Each
rule calls one public operation of `JobStore` and the model's idea of it, and the
invariant reads everything back (every record, the counts, the page, each instance's
orphans and runnable jobs) and compares. On the persistent stores two instances share the
store; "an instance is lost" closes one without letting it touch its jobs (as a process
that died, or whose lease expired and was judged gone: its jobs become orphans either
way) and a new instance takes its place. Hypothesis shrinks any disagreement to the
shortest sequence that shows it; keep such a sequence as an `@example`-style test below.
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import timedelta
from pathlib import Path

import pytest
from anyio.from_thread import BlockingPortal, start_blocking_portal
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from pow_mcp.store import (
    JobExistsError,
    JobNotFoundError,
    JobQuery,
    JobRecord,
    JobStatus,
    JobStore,
    MemoryJobStore,
    StoreSettings,
    open_store,
    utc_now,
)
from pow_mcp.store.record import (
    ACTIVE,
    ANY_INSTANCE,
    TERMINAL,
    UNFINISHED,
    Checkpoint,
    JobResult,
    Progress,
    ProofOfWork,
    Recovery,
)
from pow_mcp.store.transfer import all_jobs, export_jobs, import_jobs
from tests.conftest import STORE_KINDS, settings_for
from tests.store_helpers import make_record

# Share of the profile's `max_examples` each backend gets (ci: 100; long: 2000), so that
# `make test` stays within its time: a database step costs tens of times a memory one.
BUDGET = {"memory": 1.0, "json": 0.3, "sqlite": 0.25, "postgresql": 0.2}
CLAIMABLE = ACTIVE
PRIORITIES = ("low", "normal", "high", "critical")


@dataclass
class Job:
    """What the contract says a stored job is, as far as the model follows it."""

    status: JobStatus
    owner: str | None
    priority: str
    hashes: int = 0
    position: int = 0
    nonce: str | None = None
    error: str | None = None
    recoveries: int = 0
    delayed: bool = False  # a retry waiting for its run_after


@dataclass
class Model:
    jobs: dict[str, Job] = field(default_factory=dict)
    live: set[str] = field(default_factory=set)  # instances whose store is open

    def orphans_for(self, instance: str, shared: bool) -> set[str]:
        """Active jobs another instance cannot run any more (memory: any other owner)."""
        return {
            job_id
            for job_id, job in self.jobs.items()
            if job.status in ACTIVE
            and job.owner != instance
            and (not shared or job.owner is None or job.owner not in self.live)
        }

    def runnable_for(self, instance: str) -> list[str]:
        return [
            job_id
            for job_id, job in self.jobs.items()
            if job.status is JobStatus.QUEUED and job.owner == instance and not job.delayed
        ]


class Actor:
    """One server instance: an open store and how to close it."""

    def __init__(self, portal: BlockingPortal, settings: StoreSettings) -> None:
        self._context = portal.wrap_async_context_manager(open_store(settings))
        self.store: JobStore = self._context.__enter__()

    @property
    def id(self) -> str:
        return self.store.instance_id

    def close(self) -> None:
        self._context.__exit__(None, None, None)


class Instances:
    """The open instances, kept from one example to the next (opening a database store
    costs more than a whole example's steps); each example starts by emptying the store."""

    def __init__(self, portal: BlockingPortal, settings: StoreSettings, count: int) -> None:
        self.portal, self.settings = portal, settings
        self.actors: list[Actor] = []
        for _ in range(count):
            self.add()

    def add(self) -> Actor:
        actor = Actor(self.portal, replace(self.settings, instance_id=None))
        self.actors.append(actor)
        return actor

    def lose(self, index: int) -> tuple[Actor, Actor]:
        """Close one (as if its process died) and open a new one in its place."""
        lost = self.actors.pop(index)
        lost.close()
        return lost, self.add()

    def close(self) -> None:
        for actor in self.actors:
            actor.close()


class StoreMachine(RuleBasedStateMachine):
    """Set `instances` and `scratch` on the class (see `machine_for`) before running it."""

    instances: Instances
    scratch: Path

    def __init__(self) -> None:
        super().__init__()
        self.actors = self.instances.actors
        self.model = Model(live={actor.id for actor in self.actors})
        self.shared = self.instances.settings.persist

    def run(self, coroutine_fn, *args):  # type: ignore[no-untyped-def]
        return self.instances.portal.call(coroutine_fn, *args)

    @initialize()
    def empty_store(self) -> None:
        self.run(self.actors[0].store.delete_all)  # examples share one store

    def actor(self, index: int) -> Actor:
        return self.actors[index % len(self.actors)]

    def job_of(self, data: st.DataObject) -> str:
        """An existing job's id, now and then an unknown one."""
        known = sorted(self.model.jobs)
        return data.draw(st.sampled_from([*known, "pow_1_unknown"]) if known else st.just("x"))

    def record(self, actor: Actor, job_id: str) -> JobRecord | None:
        """The job as its owner would hold it: the stored record, owned by `actor`."""
        stored = self.run(actor.store.get, job_id)
        return None if stored is None else stored.model_copy(update={"owner": actor.id})

    # -- creating ----------------------------------------------------------------------------

    @rule(
        actor=st.integers(0, 1),
        priorities=st.lists(st.sampled_from(PRIORITIES), min_size=1, max_size=3),
    )
    def create(self, actor: int, priorities: list[str]) -> None:
        who = self.actor(actor)
        records = [
            make_record(owner=who.id, job_data={"prefix": "m-", "difficulty": 5, "priority": p})
            for p in priorities
        ]
        self.run(who.store.create, records)
        for record, priority in zip(records, priorities, strict=True):
            self.model.jobs[record.job_id] = Job(JobStatus.QUEUED, who.id, priority)

    @precondition(lambda self: self.model.jobs)
    @rule(data=st.data())
    def create_with_a_taken_id(self, data: st.DataObject) -> None:
        taken = data.draw(st.sampled_from(sorted(self.model.jobs)))
        fresh = make_record(owner=self.actor(0).id)
        with pytest.raises(JobExistsError):
            self.run(self.actor(0).store.create, [fresh, make_record(job_id=taken)])

    # -- the owner's moves -------------------------------------------------------------------

    def _owners_move(
        self,
        data: st.DataObject,
        actor: int,
        name: str,
        allowed: frozenset[JobStatus],
        update: dict[str, object],
    ) -> Job | None:
        """The owner's move `name` (a `JobStore` method) of a drawn job, its body changed by
        `update`; the model's job if the move applied, as it must exactly when allowed."""
        who, job_id = self.actor(actor), self.job_of(data)
        record = self.record(who, job_id)
        if record is None:
            return None
        applied = self.run(getattr(who.store, name), record.model_copy(update=update))
        job = self.model.jobs[job_id]
        expected = job.status in allowed and job.owner == who.id
        assert applied == expected
        return job if expected else None

    @rule(data=st.data(), actor=st.integers(0, 1), running=st.booleans())
    def claim(self, data: st.DataObject, actor: int, running: bool) -> None:
        status = JobStatus.RUNNING if running else JobStatus.WAITING
        job = self._owners_move(data, actor, "claim", CLAIMABLE, {"status": status})
        if job is not None:
            job.status, job.delayed = status, False

    @rule(data=st.data(), actor=st.integers(0, 1), hashes=st.integers(1, 10**6))
    def save_progress(self, data: st.DataObject, actor: int, hashes: int) -> None:
        who, job_id = self.actor(actor), self.job_of(data)
        record = self.record(who, job_id)
        if record is None:
            return
        job = self.model.jobs[job_id]
        total, position = job.hashes + hashes, job.position + hashes
        body = record.model_copy(
            update={
                "progress": Progress(hashes=total, best_zeros=2),
                "checkpoint": Checkpoint(position=position, in_flight=[(position, 64)]),
            }
        )
        lost = self.run(who.store.save_progress, [body])
        expected = job.status in UNFINISHED and job.owner == who.id
        assert lost == (set() if expected else {job_id})
        if expected:
            job.hashes, job.position = total, position

    @rule(data=st.data(), actor=st.integers(0, 1), outcome=st.sampled_from(sorted(TERMINAL)))
    def finish(self, data: st.DataObject, actor: int, outcome: JobStatus) -> None:
        nonce = str(data.draw(st.integers(0, 10**12)))
        update: dict[str, object] = {"status": outcome}
        if outcome is JobStatus.COMPLETED:
            proof = ProofOfWork(hash="0" * 64, nonce=nonce, valid=True, difficulty=5)
            update["result"] = JobResult(proof_of_work=proof)
        elif outcome is JobStatus.FAILED:
            update["error"] = "worker pool failed"
        job = self._owners_move(data, actor, "finish", UNFINISHED, update)
        if job is not None:
            job.status = outcome
            job.nonce = nonce if outcome is JobStatus.COMPLETED else job.nonce
            job.error = "worker pool failed" if outcome is JobStatus.FAILED else job.error

    @rule(data=st.data(), actor=st.integers(0, 1), later=st.booleans())
    def requeue_for_a_retry(self, data: st.DataObject, actor: int, later: bool) -> None:
        delay = timedelta(hours=1) if later else -timedelta(seconds=1)
        update = {"run_after": utc_now() + delay}
        job = self._owners_move(data, actor, "requeue", ACTIVE, update)
        if job is not None:
            job.status, job.delayed = JobStatus.QUEUED, later

    @rule(data=st.data(), actor=st.integers(0, 1))
    def release(self, data: st.DataObject, actor: int) -> None:
        job = self._owners_move(data, actor, "release", ACTIVE, {})
        if job is not None:
            job.status, job.owner = JobStatus.QUEUED, ANY_INSTANCE

    # -- anyone's moves ----------------------------------------------------------------------

    @rule(data=st.data(), actor=st.integers(0, 1))
    def cancel(self, data: st.DataObject, actor: int) -> None:
        self._anyones_move(data, actor, "cancel", UNFINISHED, JobStatus.CANCELLED)

    @rule(data=st.data(), actor=st.integers(0, 1))
    def pause(self, data: st.DataObject, actor: int) -> None:
        self._anyones_move(data, actor, "pause", ACTIVE, JobStatus.PAUSED)

    @rule(data=st.data(), actor=st.integers(0, 1), anywhere=st.booleans())
    def resume(self, data: st.DataObject, actor: int, anywhere: bool) -> None:
        who, job_id = self.actor(actor), self.job_of(data)
        owner = ANY_INSTANCE if anywhere else who.id
        job = self.model.jobs.get(job_id)
        if job is None:
            with pytest.raises(JobNotFoundError):
                self.run(who.store.resume, job_id, owner)
            return
        record, changed = self.run(who.store.resume, job_id, owner)
        assert changed == (job.status is JobStatus.PAUSED)
        if changed:
            job.status, job.owner, job.delayed = JobStatus.QUEUED, owner, False
        assert record.status is job.status and record.owner == job.owner

    def _anyones_move(
        self,
        data: st.DataObject,
        actor: int,
        name: str,
        allowed: frozenset[JobStatus],
        to: JobStatus,
    ) -> None:
        who, job_id = self.actor(actor), self.job_of(data)
        move = getattr(who.store, name)
        job = self.model.jobs.get(job_id)
        if job is None:
            with pytest.raises(JobNotFoundError):
                self.run(move, job_id)
            return
        record, changed = self.run(move, job_id)
        assert changed == (job.status in allowed)
        if changed:
            job.status = to
        assert record.status is job.status

    # -- instances coming and going ----------------------------------------------------------

    @precondition(lambda self: self.shared)
    @rule(actor=st.integers(0, 1))
    def an_instance_is_lost(self, actor: int) -> None:
        """Its process died (or its lease expired): closed with its jobs as they stand."""
        lost, fresh = self.instances.lose(actor % len(self.actors))
        self.model.live.discard(lost.id)
        self.model.live.add(fresh.id)

    @rule(actor=st.integers(0, 1), resume=st.booleans())
    def recover_orphans(self, actor: int, resume: bool) -> None:
        """What the job manager does with orphans: queue them here, or fail them."""
        who = self.actor(actor)
        found = self.run(who.store.orphans)
        assert {r.job_id for r in found} == self.model.orphans_for(who.id, self.shared)
        for record in found:
            job = self.model.jobs[record.job_id]
            if resume:
                entry = Recovery(at=utc_now(), from_status=record.status.value)
                new = record.model_copy(
                    update={
                        "status": JobStatus.QUEUED,
                        "owner": who.id,
                        "recoveries": [*record.recoveries, entry],
                    }
                )
            else:
                new = record.model_copy(update={"status": JobStatus.FAILED, "error": "interrupted"})
            assert self.run(who.store.adopt, new, record.owner)
            assert not self.run(who.store.adopt, new, record.owner)  # it is taken now
            if resume:
                job.status, job.owner, job.recoveries = JobStatus.QUEUED, who.id, job.recoveries + 1
            else:
                job.status, job.error = JobStatus.FAILED, "interrupted"

    # -- housekeeping ------------------------------------------------------------------------

    @rule(actor=st.integers(0, 1), everything=st.booleans())
    def cleanup(self, actor: int, everything: bool) -> None:
        who = self.actor(actor)
        if everything:  # every finished job ended before a second from now
            removed = self.run(who.store.delete_finished, 0, utc_now() + timedelta(seconds=1))
        else:
            removed = self.run(who.store.delete_finished, 10**6)
        expected = {i for i, job in self.model.jobs.items() if job.status in TERMINAL}
        assert set(removed) == (expected if everything else set())
        for job_id in removed:
            del self.model.jobs[job_id]

    @rule(actor=st.integers(0, 1))
    def export_then_import(self, actor: int) -> None:
        who = self.actor(actor)
        path = Path(tempfile.mkdtemp(dir=self.scratch)) / "export.json"
        assert self.run(export_jobs, who.store, path) == len(self.model.jobs)
        elsewhere = MemoryJobStore("elsewhere")
        imported = self.run(import_jobs, elsewhere, path)
        assert imported.created == len(self.model.jobs) and not imported.unreadable
        ours = [r.model_dump() for r in self.run(all_jobs, who.store)]
        assert [r.model_dump() for r in self.run(all_jobs, elsewhere)] == ours
        again = self.run(import_jobs, who.store, path)  # nothing is new: nothing changes
        assert again.created == 0 and sorted(again.skipped) == sorted(self.model.jobs)

    # -- the invariant -----------------------------------------------------------------------

    @invariant()
    def store_agrees_with_the_model(self) -> None:
        for actor in self.actors:
            self._check_through(actor)

    def _check_through(self, actor: Actor) -> None:
        store, model = actor.store, self.model
        stored = self.run(store.get_many, [*model.jobs, "pow_1_unknown"])
        assert sorted(stored) == sorted(model.jobs)
        for job_id, job in model.jobs.items():
            _agree(stored[job_id], job)
        page, total = self.run(store.find, JobQuery(limit=1000))
        assert total == len(model.jobs) and sorted(r.job_id for r in page) == sorted(model.jobs)
        counts = self.run(store.status_counts)
        for status in JobStatus:
            expected = sum(1 for j in model.jobs.values() if j.status is status)
            assert counts.get(status, 0) == expected, status
        runnable = self.run(store.runnable, actor.id, utc_now(), 1000)
        assert [r.job_id for r in runnable] == _dispatch_order(model.runnable_for(actor.id), stored)


def _agree(record: JobRecord, job: Job) -> None:
    where = f"job {record.job_id}"
    assert record.status is job.status, where
    assert record.owner == job.owner, where
    assert record.job_data["priority"] == job.priority, where
    assert record.progress.hashes == job.hashes, where
    assert (record.checkpoint.position if record.checkpoint else 0) == job.position, where
    proof = record.result.proof_of_work if record.result else None
    assert (proof.nonce if proof else None) == job.nonce, where
    assert record.error == job.error, where
    assert len(record.recoveries) == job.recoveries, where
    assert (record.completed_at is not None) == (job.status in TERMINAL), where


def _dispatch_order(job_ids: list[str], records: dict[str, JobRecord]) -> list[str]:
    chosen = [records[i] for i in job_ids]
    chosen.sort(key=lambda r: (-r.priority, r.created_at, r.job_id))
    return [r.job_id for r in chosen]


def machine_for(kind: str, instances: Instances, scratch: Path) -> type[StoreMachine]:
    """The machine class for one backend."""
    attributes = {"instances": instances, "scratch": scratch}
    return type(f"StoreMachine_{kind}", (StoreMachine,), attributes)


@contextlib.contextmanager
def _budget(kind: str) -> Iterator[settings]:
    base = settings()  # the active profile (tests/conftest.py): ci by default, or long
    yield settings(
        base,
        max_examples=max(1, int(base.max_examples * BUDGET[kind])),
        deadline=None,  # a step does I/O: its time says nothing about correctness
        stateful_step_count=base.stateful_step_count,
    )


@pytest.mark.parametrize("kind", STORE_KINDS, indirect=True)
def test_the_store_behaves_as_its_model(
    kind: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    store_settings = settings_for(kind, tmp_path / "data", request)
    count = 2 if store_settings.persist else 1  # two instances where the store is shared
    with start_blocking_portal() as portal, _budget(kind) as budget:
        instances = Instances(portal, store_settings, count)
        try:
            run_state_machine_as_test(machine_for(kind, instances, tmp_path), settings=budget)
        finally:
            instances.close()
