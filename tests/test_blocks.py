"""Block heights: the answer shapes BLOCK_HEIGHT_URL may give, and extrapolation."""

from __future__ import annotations

import pytest

from pow_mcp.server.jobs.blocks import Anchor, parse_height


@pytest.mark.parametrize(
    ("body", "height"),
    [
        ("712049", 712049),
        (" 712049\n", 712049),
        ('{"height": 712049}', 712049),
        ('{"height": "712049"}', 712049),
        ('{"block": {"header": {"height": "712049", "chain_id": "structs"}}}', 712049),
        ('{"sdk_block": {"header": {"height": "712049"}}, "block": null}', 712049),
    ],
)
def test_understood_answers(body: str, height: int) -> None:
    assert parse_height(body) == height


@pytest.mark.parametrize(
    "body", ["", "<html>down</html>", '{"status": "ok"}', "-5", "true", '{"height": null}']
)
def test_answers_without_a_height_are_refused(body: str) -> None:
    with pytest.raises(ValueError):
        parse_height(body)


def test_anchor_extrapolates_one_block_per_block_time() -> None:
    anchor = Anchor(1000, block_time=5.0, at=0.0)
    # `at` far in the past: many blocks have passed since the reading.
    assert anchor.now() > 1000
    fresh = Anchor(1000, block_time=3600.0)
    assert fresh.now() == 1000
    assert 3599.0 < fresh.seconds_until(1001) <= 3600.0
    assert fresh.seconds_until(999) == 0.0
