"""Hashing pools: the interface (`HashingPool`) and its implementations."""

from pow_mcp.pow.pool.base import HashingPool, JobHandle
from pow_mcp.pow.pool.local import LocalPool, WorkerPool, default_workers

__all__ = ["HashingPool", "JobHandle", "LocalPool", "WorkerPool", "default_workers"]
