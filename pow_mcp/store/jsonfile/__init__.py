"""The JSON file backend: atomic file, multi-process merge, damage recovery, locks."""

from pow_mcp.store.jsonfile.store import JOBS_FILE, JsonFileJobStore

__all__ = ["JOBS_FILE", "JsonFileJobStore"]
