"""Job records and their persistence (JSON file, or memory only)."""
