"""When another instance counts as gone: leases judged by what this instance saw.

Each instance renews its row in `instances` every third of JOBS_LEASE_SECONDS (its
heartbeat counter goes up, its expiry moves on). An instance is judged gone only if

- its lease has expired by the database's clock, and
- this instance watched its heartbeat stand still for two renewal intervals of its own
  running time (monotonic time, which stands still while the machine sleeps), and
- this instance's own lease is fresh: after a suspend it renews its own lease first and
  starts its observations over, so a laptop that wakes up never judges its peers on the
  time they all slept.

The judge then deletes the gone instance's row (only if its heartbeat is still the one it
saw), and the jobs it owned become orphans for the job manager's recovery policy.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

SUSPEND_SLACK_SECONDS = 2.0  # wall time running ahead of monotonic time by more: a suspend


@dataclass(frozen=True, slots=True)
class Peer:
    instance_id: str
    heartbeat: int
    expired: bool  # by the database's clock


@dataclass(slots=True)
class _Seen:
    heartbeat: int
    since: float  # monotonic time when this heartbeat was first seen


class LeaseJudge:
    """This instance's view of its peers' heartbeats (pure: the clocks are injected)."""

    def __init__(
        self,
        lease_seconds: float,
        monotonic: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        if lease_seconds <= 0:
            raise ValueError(f"lease_seconds must be > 0, not {lease_seconds}")
        self.lease_seconds = lease_seconds
        self.renew_interval = lease_seconds / 3
        self.window = 2 * self.renew_interval
        self._monotonic, self._wall = monotonic, wall
        self._seen: dict[str, _Seen] = {}
        self._renewed: tuple[float, float] | None = None  # (monotonic, wall) of our renewal

    def renewed(self) -> None:
        """Our own lease was just renewed; a suspend since the last renewal resets what we
        saw of the others (we cannot tell what they did while we slept)."""
        mono, wall = self._monotonic(), self._wall()
        if self._renewed is not None:
            last_mono, last_wall = self._renewed
            if (wall - last_wall) - (mono - last_mono) > SUSPEND_SLACK_SECONDS:
                self._seen.clear()
        self._renewed = (mono, wall)

    @property
    def own_lease_fresh(self) -> bool:
        if self._renewed is None:
            return False
        return self._monotonic() - self._renewed[0] < self.renew_interval * 1.5

    def judge(self, peers: Iterable[Peer]) -> list[Peer]:
        """The peers to declare gone now; updates what we saw of each."""
        now = self._monotonic()
        present: set[str] = set()
        gone: list[Peer] = []
        for peer in peers:
            present.add(peer.instance_id)
            seen = self._seen.get(peer.instance_id)
            if seen is None or seen.heartbeat != peer.heartbeat:
                self._seen[peer.instance_id] = _Seen(peer.heartbeat, now)
                continue
            if peer.expired and now - seen.since >= self.window and self.own_lease_fresh:
                gone.append(peer)
        for instance_id in set(self._seen) - present:
            del self._seen[instance_id]
        return gone
