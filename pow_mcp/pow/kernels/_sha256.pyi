"""Type stub of the C extension pow_mcp.pow.kernels._sha256 (c/module.c over c/sha256_search.c)."""

def engines() -> tuple[str, ...]:
    """Engine names this CPU can run, fastest first."""

def search(
    engine: str, prefix: bytes, start: int, count: int, difficulty: int, /
) -> tuple[int | None, int, int, int, str]:
    """(found_nonce, hashes, best_nonce, best_zeros, best_hash) over nonces [start, start + count).

    Needs count >= 1, start + count - 1 < 2**64 and 1 <= difficulty <= 64.
    """

def digests(engine: str, prefix: bytes, start: int, count: int, /) -> bytes:
    """The 32-byte digests of every nonce in [start, start + count), concatenated (for tests)."""

def rounds_per_hash(engine: str, prefix_len: int, digits: int, /) -> float:
    """SHA-256 rounds the engine spends per hash on nonces of that many digits."""
