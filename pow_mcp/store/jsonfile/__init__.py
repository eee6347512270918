"""The JSON file backend: atomic file, multi-process merge, damage recovery, locks."""

from pow_mcp.store.jsonfile.datadir import JOBS_FILE
from pow_mcp.store.jsonfile.store import JsonFileJobStore

__all__ = ["JOBS_FILE", "JsonFileJobStore"]
