"""A process that owns a busy Dask pool, for tests that SIGKILL it.

`python -m tests.dask_child ADDRESS`: connects a `DaskPool` to the scheduler at ADDRESS,
starts an endless search, prints `HASHING` once a chunk of it came back (the workers are
hashing), then blocks until killed.
"""

from __future__ import annotations

import sys

import anyio

from pow_mcp.pow.pool.dask import DaskPool
from pow_mcp.pow.scheduler import SearchTask


async def main(address: str) -> None:
    async with DaskPool.open(address) as pool:
        hashing = anyio.Event()
        pool.submit("forever", SearchTask("orphan-test-", 64), lambda _p: hashing.set())
        await hashing.wait()
        print("HASHING", flush=True)
        await anyio.sleep_forever()


if __name__ == "__main__":
    anyio.run(main, sys.argv[1])
