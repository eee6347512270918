"""Type stub of the C extension pow._sha256 (pow/_sha256.c)."""

def engines() -> tuple[str, ...]:
    """Engine names this CPU can run, fastest first."""

def search(
    engine: str, prefix: bytes, start: int, count: int, difficulty: int, /
) -> tuple[int | None, int, int, int, str]:
    """(found_nonce, hashes, best_nonce, best_zeros, best_hash) over [start, start + count).

    Needs count >= 1, start + count - 1 < 2**64 and 1 <= difficulty <= 64.
    """

def digests(engine: str, prefix: bytes, start: int, count: int, /) -> bytes:
    """The 32-byte digests of every nonce in [start, start + count), concatenated (for tests)."""
