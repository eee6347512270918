"""Intake: job specs become durable records, queued, or waiting for their block, for the
calling principal, within its limits and after the jobs they depend on."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import timedelta

from pow_mcp.pow.difficulty import age_difficulty, expected_hashes
from pow_mcp.pow.layout import LAYOUT_LATEST
from pow_mcp.pow.pool import HashingPool
from pow_mcp.server.auth import CALLER
from pow_mcp.server.config import Config
from pow_mcp.server.jobs.blocks import Anchor, BlockClock
from pow_mcp.server.jobs.dispatcher import Dispatcher
from pow_mcp.server.jobs.planner import plan_info, preview, waiting_info
from pow_mcp.server.jobs.spec import JobInputError, JobSpec, TaskRequest, new_id
from pow_mcp.store import JobRecord, JobStatus, JobStore, utc_now
from pow_mcp.store.record import UNFINISHED, Checkpoint

log = logging.getLogger(__name__)


class Intake:
    """Creates jobs: all of a call's jobs are recorded at once, or none."""

    def __init__(
        self,
        config: Config,
        store: JobStore,
        pool: HashingPool,
        clock: BlockClock,
        dispatcher: Dispatcher,
    ) -> None:
        self.config, self.store, self.pool, self.clock = config, store, pool, clock
        self.dispatcher = dispatcher

    async def start(
        self,
        specs: Sequence[JobSpec],
        *,
        tags: Sequence[str] = (),
        batch_id: str | None = None,
        task: TaskRequest | None = None,
    ) -> list[JobRecord]:
        """Record the jobs durably (all or none) and queue them, for the calling principal;
        returns their records."""
        principal = CALLER.get().principal
        await self._check_active_limit(principal, len(specs))
        deps = await self._dependencies(specs)
        now = utc_now()
        records = []
        for index, spec in enumerate(specs):
            anchor = await self._anchor_for(spec)
            created = now + timedelta(microseconds=index)  # a batch runs in its own order
            record = JobRecord(
                job_id=new_id("pow"),
                status=JobStatus.QUEUED,
                created_at=created,
                updated_at=created,
                job_data=spec.job_data(),
                owner=self.store.instance_id,
                principal=principal,
                batch_id=batch_id,
                tags=sorted(set(spec.tags) | set(tags)),
                blocked_by=[d for d in spec.depends_on if deps[d] is not JobStatus.COMPLETED],
                kernel=self.pool.kernel_name,
                checkpoint=Checkpoint(layout=LAYOUT_LATEST),  # its search order, for good
            )
            if spec.age_based:
                record = self._initial_wait(record, spec, anchor)
            records.append(record)
        if task is not None:  # the first job heads the task: its id is the job's or the batch's
            keep = None if task.ttl_seconds is None else now + timedelta(seconds=task.ttl_seconds)
            records[0] = records[0].model_copy(update={"task_id": batch_id or records[0].job_id})
            records = [r.model_copy(update={"keep_until": keep}) for r in records]
        await self.store.create(records)
        for record, spec in zip(records, specs, strict=True):
            log.info("job %s created: prefix %r, %s", record.job_id, spec.prefix, _describe(spec))
            if record.status is JobStatus.WAITING:
                self.dispatcher.start_now(record)
        self.dispatcher.wake(blocked=any(r.blocked_by for r in records))
        return records

    async def _check_active_limit(self, principal: str | None, adding: int) -> None:
        most = self.config.max_active_jobs
        active = await self.store.count(UNFINISHED, principal)
        if active + adding > most:
            who = f"principal {principal!r}" if principal else "this server"
            raise JobInputError(
                f"{who} has {active} unfinished jobs and may have at most {most} "
                "(POW_MAX_ACTIVE_JOBS): wait for some to end, or cancel some, then start again"
            )

    async def _dependencies(self, specs: Sequence[JobSpec]) -> dict[str, JobStatus]:
        wanted = sorted({d for spec in specs for d in spec.depends_on})
        found = await self.store.get_many(wanted) if wanted else {}
        missing = [d for d in wanted if d not in found]
        if missing:
            raise JobInputError(
                f"depends_on names jobs that do not exist: {', '.join(missing)}; use job_ids "
                "that start_proof_of_work returned (list_jobs shows them)"
            )
        return {job_id: record.status for job_id, record in found.items()}

    async def _anchor_for(self, spec: JobSpec) -> Anchor | None:
        if not spec.age_based:
            return None
        if spec.current_block_height is not None:
            return Anchor(spec.current_block_height, self.config.block_time_seconds)
        if self.clock.anchor is None and self.clock.url is not None:
            await self.clock.refresh()
        if self.clock.anchor is None:
            source = (
                f"BLOCK_HEIGHT_URL ({self.clock.url}) gave no height: {self.clock.last_error}"
                if self.clock.url
                else "BLOCK_HEIGHT_URL is not set"
            )
            raise JobInputError(
                f"difficulty_range needs the current block height: pass current_block_height "
                f"({source})"
            )
        return None

    def _initial_wait(self, record: JobRecord, spec: JobSpec, anchor: Anchor | None) -> JobRecord:
        """An age-based job whose difficulty is still too high starts out waiting."""
        assert spec.block_start is not None and spec.difficulty_range is not None
        source = self.clock.anchor or anchor
        assert source is not None
        height = source.now()
        difficulty = age_difficulty(height - spec.block_start, spec.difficulty_range)
        target = self.config.target_start
        if target.threshold is not None:
            if difficulty <= target.threshold:
                return record
            info = waiting_info(spec, height, difficulty, target.threshold)
        else:
            rate, block = self.pool.hashrate, self.config.block_time_seconds
            plan = preview(target, spec, record, height, rate, block)
            if plan.should_hash(height):
                return record
            info = plan_info(plan, spec, height, difficulty)
        return record.model_copy(update={"status": JobStatus.WAITING, "waiting_info": info})


def _describe(spec: JobSpec) -> str:
    if spec.age_based:
        return f"age-based, range {spec.difficulty_range:g} from block {spec.block_start}"
    return (
        f"difficulty {spec.difficulty}, {expected_hashes(spec.difficulty or 0):,} hashes expected"
    )
