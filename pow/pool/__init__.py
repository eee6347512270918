"""Hashing pools: the interface (`HashingPool`) and its implementations."""

from pow.pool.base import HashingPool, JobHandle
from pow.pool.local import LocalPool, WorkerPool, default_workers

__all__ = ["HashingPool", "JobHandle", "LocalPool", "WorkerPool", "default_workers"]
