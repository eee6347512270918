"""The current block height: polled from BLOCK_HEIGHT_URL, or extrapolated from a known height.

Failures to poll are logged and never fail a job: the height is then extrapolated from the
last good reading at BLOCK_TIME_SECONDS per block.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

import anyio
import httpx2

log = logging.getLogger(__name__)

POLL_TIMEOUT_SECONDS = 5.0


def parse_height(body: str) -> int:
    """Understand a bare number, {"height": N}, or a Cosmos REST blocks/latest answer."""
    text = body.strip()
    try:
        data: Any = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"not JSON or a number: {text[:80]!r}") from exc
    if isinstance(data, dict):
        if "height" in data:
            data = data["height"]
        else:
            block = data.get("block") or data.get("sdk_block") or {}
            data = block.get("header", {}).get("height")
    if isinstance(data, bool) or data is None:
        raise ValueError(f"no block height in {text[:80]!r}")
    height = int(data)  # Cosmos writes heights as strings
    if height < 0:
        raise ValueError(f"negative block height {height}")
    return height


class Anchor:
    """A height seen at a moment; later heights are extrapolated from it."""

    def __init__(self, height: int, block_time: float, at: float | None = None) -> None:
        self.height, self.block_time = height, block_time
        self.at = time.monotonic() if at is None else at

    def now(self) -> int:
        return self.height + int((time.monotonic() - self.at) / self.block_time)

    def seconds_until(self, height: int) -> float:
        """Seconds until the extrapolated height reaches `height` (0 if it already has)."""
        due = self.at + (height - self.height) * self.block_time
        return max(0.0, due - time.monotonic())


class BlockClock:
    """Heights from a URL polled about once a block; `changed` fires on every new reading."""

    def __init__(self, url: str | None, block_time: float) -> None:
        self.url, self.block_time = url, block_time
        self.anchor: Anchor | None = None
        self._changed = anyio.Event()
        self.last_error: str | None = None
        self._last_success: float | None = None  # monotonic time of the last good reading

    def height(self) -> int | None:
        return None if self.anchor is None else self.anchor.now()

    def silent_for(self) -> float:
        """Seconds since the source last answered (0 when there is no source)."""
        if self.url is None or self._last_success is None:
            return 0.0
        return time.monotonic() - self._last_success

    async def wait_changed(self) -> None:
        await self._changed.wait()

    def _observe(self, height: int) -> None:
        previous = self.height()
        self.anchor = Anchor(height, self.block_time)
        if previous != height:
            self._changed.set()
            self._changed = anyio.Event()

    async def poll_once(self, client: httpx2.AsyncClient) -> None:
        assert self.url is not None
        try:
            response = await client.get(self.url, timeout=POLL_TIMEOUT_SECONDS)
            response.raise_for_status()
            self._observe(parse_height(response.text))
            self.last_error = None
            self._last_success = time.monotonic()
        except (httpx2.HTTPError, ValueError) as exc:
            if str(exc) != self.last_error:
                log.warning("block height from %s failed (%s); extrapolating", self.url, exc)
            self.last_error = str(exc)

    async def refresh(self) -> None:
        """Poll once now (a job needs a height before the next scheduled poll)."""
        if self.url is not None:
            async with httpx2.AsyncClient(follow_redirects=True) as client:
                await self.poll_once(client)

    async def run(self) -> None:
        """Poll forever (about once a block); returns at once when no URL is configured."""
        if self.url is None:
            return
        async with httpx2.AsyncClient(follow_redirects=True) as client:
            while True:
                await self.poll_once(client)
                await anyio.sleep(max(self.block_time, 0.05))
