"""Proof-of-work core: hashing scheme, difficulty, search kernels and the worker pool.

Pure computation: nothing here knows about MCP or the jobs file.
"""
