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

Modules. `DaskPool` is one object built in layers, a module each, every one on top of the
one before: `cluster.ClusterLayer` (the pool's loop, the connection, the workers and their
calibration), `jobs.JobsLayer` (the jobs' commands and events, their wait for the cluster),
`chunks.ChunksLayer` (chunks out to the workers and back, and their timing), and
`pool.DaskPool` (what callers see, opening and closing, the thread's main loop). What the
workers run is `tasks`.

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

from pow_mcp.pow.pool.dask.cluster import ClusterError
from pow_mcp.pow.pool.dask.pool import DaskPool

__all__ = ["ClusterError", "DaskPool"]
