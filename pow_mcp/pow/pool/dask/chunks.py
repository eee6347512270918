"""The Dask pool's chunks on the cluster: how large each is, to which worker and when it is
sent, and what comes back: its answer, a loss (its workers kept dying), or nothing (the
connection went, and the chunk is pending again).

Timing. A chunk is about `chunk_seconds` of one worker thread's measured work. Each thread
of a worker holds one chunk, and one more chunk is sent to the worker `prefetch_seconds`
before its first one should end: a task reaches a worker only some 10-25 ms after it is
submitted (the client and the scheduler batch their messages), so without that the worker
would idle that long per chunk; sent earlier, the spare chunk would sit queued, and a stop
would wait for it too. So a stop is over within about one chunk plus `prefetch_seconds`
(0.65 s) when the worker's rate was measured right; a worker's first chunks are half size,
before a real one measured it.
A cancel drops the job's tasks on the cluster at once: queued ones never start, and one
already running ends with its chunk (Dask cannot interrupt a running task: that is why a
chunk is short).
"""

from __future__ import annotations

import concurrent.futures
import logging
import math
import time

from distributed import Future, KilledWorker

from pow_mcp.pow.kernels import ChunkResult
from pow_mcp.pow.pool.dask.cluster import TICK_SECONDS, ChunkOut, Worker
from pow_mcp.pow.pool.dask.jobs import JobsLayer
from pow_mcp.pow.pool.dask.tasks import SearchAnswer, search_task
from pow_mcp.pow.scheduler import Chunk

# The pool's one logger, whichever of its modules logs: named after the package.
log = logging.getLogger(__package__)

CHUNK_SECONDS = 0.5
PREFETCH_SECONDS = 0.15
SLICE_SECONDS = 0.05  # a task looks whether it was cancelled this often
FIRST_CHUNK = 4096  # the smallest chunk, and the least that measures a rate


class ChunksLayer(JobsLayer):
    """`DaskPool`'s chunks out on the cluster, on the pool's loop."""

    chunk_seconds: float
    prefetch_seconds: float
    _outs: dict[str, ChunkOut]  # task key -> the chunk it searches
    _keys_of: dict[str, set[str]]  # job id -> keys of its chunks out
    chunks_sent: int  # for tests and the benchmark

    # -- chunks (pool's loop) -----------------------------------------------------------------

    def _chunk_size(self, worker: Worker) -> int:
        seconds = self.chunk_seconds
        if not worker.measured:
            # The calibration is a 50 ms sample, maybe taken while the machine was idle: the
            # first chunks are half size, so a wrong rate cannot make one run long.
            seconds /= 2
        return max(FIRST_CHUNK, int(worker.rate * seconds))

    def _dispatch(self) -> float:
        """Hand chunks to workers with room; returns when to look again (monotonic)."""
        next_at = math.inf
        client = self._client
        if self._waiting is not None or client is None or client.status != "running":
            return next_at
        if self._closing:
            return next_at
        now = time.monotonic()
        for worker in self._workers.values():
            if not (worker.ready and worker.usable):
                continue
            while len(worker.out) <= worker.threads:
                if len(worker.out) == worker.threads:  # busy: a spare just before one ends
                    at = min(o.ends_at for o in worker.out.values()) - self.prefetch_seconds
                    if at > now:
                        next_at = min(next_at, at)
                        break
                chunk = self._scheduler.next_chunk(self._chunk_size(worker), now)
                if chunk is None:
                    return math.inf  # no job can use a worker; a new one wakes the loop
                try:
                    self._send(worker, chunk, now)
                except Exception:  # the client closed under us: the next tick sees it
                    log.warning("handing a chunk to Dask failed", exc_info=True)
                    self._emit(self._scheduler.chunk_returned(chunk))
                    return min(next_at, now + TICK_SECONDS)
        return next_at

    def _send(self, worker: Worker, chunk: Chunk, now: float) -> None:
        assert self._client is not None and self._loop is not None
        seconds = chunk.count / worker.rate
        starts = now
        if len(worker.out) >= worker.threads:  # queued behind the first of its chunks to end
            starts = max(now, min(o.ends_at for o in worker.out.values()))
        key = f"pow-{chunk.job_id}-{chunk.start}-{next(self._serial)}"
        future: Future[SearchAnswer] = self._client.submit(
            search_task,
            chunk.prefix,
            chunk.start,
            chunk.count,
            chunk.difficulty,
            chunk.layout,
            self._kernel_wanted,
            max(1, round(seconds / SLICE_SECONDS)),
            key=key,
            # Loosely: if the worker dies, the scheduler runs the chunk on another one.
            workers=[worker.address],
            allow_other_workers=True,
            pure=False,
        )
        out = ChunkOut(key, chunk, worker, seconds, starts + seconds, future)
        self._outs[key] = out
        worker.out[key] = out
        self._keys_of.setdefault(chunk.job_id, set()).add(key)
        self.chunks_sent += 1
        self._spawn(self._watch(out))

    def _forget(self, out: ChunkOut) -> bool:
        """Take `out` off the books; False if it was not on them (its job ended)."""
        if self._outs.get(out.key) is not out:
            return False
        del self._outs[out.key]
        out.worker.out.pop(out.key, None)
        keys = self._keys_of.get(out.chunk.job_id)
        if keys is not None:
            keys.discard(out.key)
        return True

    def _drop_chunks(self, job_id: str) -> None:
        keys = self._keys_of.pop(job_id, set())
        futures = []
        for key in keys:
            out = self._outs.pop(key)
            out.worker.out.pop(key, None)
            futures.append(out.future)
        if futures and self._client is not None and self._client.status == "running":
            self._spawn(self._cancel(futures, f"job {job_id} ended"))

    async def _watch(self, out: ChunkOut) -> None:
        try:
            answer: SearchAnswer = await out.future
        except concurrent.futures.CancelledError:
            # Not by us (we forget a chunk before cancelling it): the client lost the
            # scheduler, and with it the result. The chunk is pending again, at no cost.
            if self._forget(out):
                self._emit(self._scheduler.chunk_returned(out.chunk))
        except KilledWorker as exc:
            if self._forget(out):
                log.warning(
                    "job %s: chunk %d killed its workers: %s",
                    out.chunk.job_id,
                    out.chunk.start,
                    exc,
                )
                self._emit(self._scheduler.chunk_lost(out.chunk))
        except Exception as exc:
            if self._forget(out):
                if out.future.status != "error":
                    # Not the task's failure: fetching its result failed with the
                    # connection. The chunk is pending again, at no cost.
                    self._emit(self._scheduler.chunk_returned(out.chunk))
                else:
                    log.warning(
                        "job %s: a Dask worker failed chunk %d: %r",
                        out.chunk.job_id,
                        out.chunk.start,
                        exc,
                    )
                    self._emit(self._scheduler.chunk_lost(out.chunk))
        else:
            if self._forget(out):
                self._on_answer(out, answer)
        self._wake_up()

    def _on_answer(self, out: ChunkOut, answer: SearchAnswer) -> None:
        address, kernel, found, hashes, best_nonce, best_zeros, best_hash, seconds = answer
        now = time.monotonic()
        ran_on = self._workers.get(address)
        if ran_on is not None and seconds > 0 and hashes >= FIRST_CHUNK:
            rate = hashes / seconds
            # The first real chunk replaces the calibration (a 50 ms sample); then a moving
            # average, steady under noise and quick to follow a change of load.
            ran_on.rate = rate if not ran_on.measured else 0.5 * (ran_on.rate + rate)
            ran_on.measured = True
            ran_on.kernel = kernel
            self._hashrate = sum(
                w.rate * w.threads for w in self._workers.values() if w.ready and w.usable
            )
        worker = out.worker
        if len(worker.out) >= worker.threads:
            # The worker's queued chunk starts now, behind the one that just came back.
            spare = max(worker.out.values(), key=lambda o: o.ends_at)
            spare.ends_at = now + spare.seconds
        if found is None and hashes < out.chunk.count:
            # Stopped short although nobody cancelled it (the worker thought it was): the
            # rest was not searched, so the whole chunk is searched again.
            log.warning("job %s: chunk %d came back unfinished", out.chunk.job_id, out.chunk.start)
            self._emit(self._scheduler.chunk_returned(out.chunk))
            return
        result = ChunkResult(found, hashes, best_nonce, best_zeros, best_hash)
        self._emit(self._scheduler.chunk_done(out.chunk, result, now))
