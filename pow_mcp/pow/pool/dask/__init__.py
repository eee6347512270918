"""A hashing pool on a Dask distributed cluster: `DaskPool` (the `pow-mcp[dask]` extra).

Only search chunks travel. Jobs, their store and the scheduling policy stay on the server,
in the same `pow.scheduler.Scheduler` bookkeeping as the local pool, so checkpoints, stops
and outcomes behave exactly alike; each chunk is one Dask task that a worker runs with its
own kernel (the C one where it was built) and answers with the kernel's result, the
worker's address and kernel name, and how long it hashed.

Threads: the Dask client lives on an asyncio loop of its own, in the "pow-dask" thread,
together with the bookkeeping; the server's event loop posts commands to it and gets each
job's progress and outcome back through a queue, as with `LocalPool`. Neither Dask's
traffic nor the chunk bookkeeping runs on the MCP server's loop.

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

Failures.
- A worker dies: chunks are pinned to a worker only loosely, so the scheduler runs the
  dead worker's chunks again elsewhere, and only those are hashed twice. A chunk whose
  workers keep dying comes back as KilledWorker and counts as a loss for its job
  (`Scheduler.chunk_lost`: after three the job fails).
- The connection to the scheduler goes: the chunks out are pending again
  (`Scheduler.chunk_returned`: their results are gone), every job gets a note in its
  progress and keeps its status; when the scheduler answers again (and has workers) the
  jobs go on from where they were, or each fails once it waited `cluster_timeout` seconds
  (a retryable failure for the job manager).
- This process stops or dies: a graceful stop cancels every task; when the process is
  killed, the operating system closes its connection to the scheduler, which drops every
  task of the client at once: queued chunks never start, running ones end with their
  chunk. With `local`, the worker processes are children of this one and exit with it.
  In every case, even when this machine vanishes without closing the connection, the
  cluster holds no more of this server's work than one chunk per worker thread and one
  spare per worker (chunks are handed out as workers need them, never queued ahead): that
  bound stands in for a lease, which tasks would otherwise have to poll.
"""

from pow_mcp.pow.pool.dask.pool import ClusterError, DaskPool

__all__ = ["ClusterError", "DaskPool"]
