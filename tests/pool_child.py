"""A process that owns a busy worker pool, for tests that SIGKILL it.

Prints `PIDS <pid> <pid> ...` once its workers are hashing, then blocks forever.
"""

from __future__ import annotations

import queue
import sys

from pow_mcp.pow.pool import WorkerPool
from pow_mcp.pow.scheduler import SearchTask


def main() -> None:
    events: queue.SimpleQueue[object] = queue.SimpleQueue()
    pool = WorkerPool(lambda job_id, event: events.put(event), workers=int(sys.argv[1]))
    pool.start()
    pool.submit("forever", SearchTask("orphan-test-", 64))
    events.get()  # the first progress: the workers are hashing now
    print("PIDS", *pool.worker_pids(), flush=True)
    while True:
        events.get()


if __name__ == "__main__":
    main()
