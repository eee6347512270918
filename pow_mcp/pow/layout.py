"""Search layouts: which nonce a job hashes at each position of its search.

A job searches positions 0, 1, 2, ... in order; its layout maps each position to the nonce
hashed there. A layout depends only on its version and the prefix bytes, so a checkpoint (a
position) means the same nonces on every kernel and machine; a job keeps the layout version it
was created with, forever.

- `LAYOUT_PLAIN` (1): position p hashes nonce p. Unbounded.
- `LAYOUT_SHORT_BLOCK` (2, `LAYOUT_LATEST`): every nonce from 0 to 2**53 - 1 exactly once (so
  that clients reading a nonce as a JavaScript number or a 64-bit integer keep working), in
  an order chosen so that the digits that change from hash to hash sit in the last SHA-256
  block, as late in it as possible. Nonces are grouped by digit count, each group in
  increasing order (so the last digits change fastest), and the groups are ordered by what a
  hash costs with that many digits after a prefix of that length mod 64 (see `_cost`):
  1. the message fits one block after the prefix's full blocks (prefix tail + digits + 9 bytes
     of padding <= 64): one compression per hash, the longest nonces first (their last digits
     sit latest in the block, so the most rounds before them are the same for a whole run);
  2. the digits cross into a second block: the first one (with the high digits) is the same
     for 10**(digits in the second) nonces, so about one compression per hash, the most
     digits in the second block first;
  3. the digits end in the first block but the padding needs a second: two compressions.
  A narrow band of prefix lengths has few nonces of one compression: 45, 46, 47 and 48 bytes
  mod 64 leave room for 10, 9, 8 and 7 digits before the padding (10**10 .. 10**7 nonces),
  and reaching the next block would take more than 16 digits, so they go on at two
  compressions per hash; 49 bytes has 10**6 nonces of one, then 1.1 (a 16-digit nonce leaves
  one digit in the second block).

The order per prefix length is `segments(layout, prefix)`. Kernels take a range of positions
and hash the nonces `nonce_runs` gives for it; `nonce_at` is the reference definition.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator

LAYOUT_PLAIN = 1
LAYOUT_SHORT_BLOCK = 2
LAYOUT_LATEST = LAYOUT_SHORT_BLOCK
LAYOUTS = (LAYOUT_PLAIN, LAYOUT_SHORT_BLOCK)

MAX_SAFE_NONCE = 2**53 - 1  # Number.MAX_SAFE_INTEGER
_MAX_DIGITS = len(str(MAX_SAFE_NONCE))  # 16

Segment = tuple[int, int]  # (first nonce, how many): consecutive nonces of one digit count


def check_layout(layout: int) -> None:
    if layout not in LAYOUTS:
        raise ValueError(f"unknown search layout {layout!r}; known: {', '.join(map(str, LAYOUTS))}")


def _cost(tail: int, digits: int) -> tuple[int, int]:
    """Sort key of a digit count after `tail` prefix bytes in the last partial block."""
    end = tail + digits  # bytes of prefix and digits in the tail
    if end + 9 <= 64:
        return (0, -digits)
    if end > 64:
        return (1, -digits)  # more digits in the second block: rarer first-block changes
    return (2, -digits)


@functools.cache
def _segments_for_tail(tail: int) -> tuple[Segment, ...]:
    order = sorted(range(1, _MAX_DIGITS + 1), key=lambda d: _cost(tail, d))
    segments = []
    for digits in order:
        first = 10 ** (digits - 1) if digits > 1 else 0
        last = min(10**digits - 1, MAX_SAFE_NONCE)
        segments.append((first, last - first + 1))
    return tuple(segments)


def segments(layout: int, prefix: bytes) -> tuple[Segment, ...]:
    """The layout's order as runs of consecutive nonces (LAYOUT_PLAIN: one unbounded run)."""
    check_layout(layout)
    if layout == LAYOUT_PLAIN:
        raise ValueError("the plain layout is one unbounded run: position p is nonce p")
    return _segments_for_tail(len(prefix) % 64)


def position_limit(layout: int, prefix: bytes) -> int | None:
    """Exclusive upper bound of the layout's positions; None: unbounded."""
    check_layout(layout)
    if layout == LAYOUT_PLAIN:
        return None
    return MAX_SAFE_NONCE + 1


def nonce_at(layout: int, prefix: bytes, position: int) -> int:
    """The nonce hashed at `position` of a search of `prefix` under `layout`."""
    limit = position_limit(layout, prefix)
    if position < 0 or (limit is not None and position >= limit):
        raise ValueError(f"position {position} is outside layout {layout} (0..{limit})")
    if layout == LAYOUT_PLAIN:
        return position
    for first, count in segments(layout, prefix):
        if position < count:
            return first + position
        position -= count
    raise AssertionError("unreachable: the segments cover every position below the limit")


def nonce_runs(layout: int, prefix: bytes, start: int, count: int) -> Iterator[Segment]:
    """Positions start .. start+count-1 as runs (first nonce, length) of consecutive nonces,
    in position order: what `nonce_at` gives, position by position."""
    limit = position_limit(layout, prefix)
    if start < 0 or count < 0 or (limit is not None and start + count > limit):
        raise ValueError(
            f"positions {start}..{start + count - 1} are outside layout {layout} (0..{limit})"
        )
    if count == 0:
        return
    if layout == LAYOUT_PLAIN:
        yield (start, count)
        return
    skip, left = start, count
    for first, length in segments(layout, prefix):
        if skip >= length:
            skip -= length
            continue
        take = min(length - skip, left)
        yield (first + skip, take)
        left -= take
        if not left:
            return
        skip = 0
