"""Warnings while the job store keeps failing (a database that is down): one line per cause
at most every WINDOW_SECONDS, carrying the count of the repeats held back, and one line when
the database answers again.

    store.outage.warning(log, "dispatching jobs failed, will retry: %s", exc)

A cause is the logger and the message template (and `about`, for a cause per job), not the
formatted text: the same failure with another error text is the same cause. The database
layer calls `failed` when an operation could not reach the database and `reachable` when
one did (each with the time it began to try); the first `reachable` after a `failed` logs
"database reachable again after N s" and lets every cause speak at once in the next outage.

Every method is called on the event loop (never from a worker thread).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

log = logging.getLogger(__name__)

WINDOW_SECONDS = 10.0


@dataclass
class _Cause:
    logged_at: float
    held_back: int = 0


class Outage:
    """The repeated warnings of one store, and whether its database is unreachable now."""

    def __init__(
        self,
        where: str,
        *,
        window: float = WINDOW_SECONDS,
        clock: Callable[[], float] = time.monotonic,
        logger: logging.Logger = log,
    ) -> None:
        self.where = where  # the database, for people (never with a password)
        self.window = window
        self.clock = clock
        self._log = logger
        self._causes: dict[tuple[str, str, str | None], _Cause] = {}
        self._failing_since: float | None = None
        self._reached_at: float | None = None  # the last time an operation reached it

    def warning(
        self, logger: logging.Logger, msg: str, *args: object, about: str | None = None
    ) -> None:
        """`logger.warning(msg, *args)`, unless this cause was logged less than `window`
        seconds ago: then it is only counted, and the next line says how often."""
        now = self.clock()
        key = (logger.name, msg, about)
        cause = self._causes.get(key)
        if cause is not None and now - cause.logged_at < self.window:
            cause.held_back += 1
            return
        if cause is not None and cause.held_back:
            msg += (
                " (%d more time in %.0f s)"
                if cause.held_back == 1
                else " (%d more times in %.0f s)"
            )
            args = (*args, cause.held_back, now - cause.logged_at)
        self._causes[key] = _Cause(now)
        logger.warning(msg, *args, stacklevel=2)  # the caller's line, not this one

    def failed(self, began: float | None = None) -> None:
        """An operation could not reach the database. `began`: when it tried (its `clock()`
        reading), if earlier than now: a failure is old news when another operation reached
        the database after this one began. (Operations end on worker threads, in any order:
        under load, an attempt made while the database was starting up can report its
        failure after a later one reported success.)"""
        if began is not None and self._reached_at is not None and began <= self._reached_at:
            return
        if self._failing_since is None:
            self._failing_since = self.clock()

    def reachable(self, began: float | None = None) -> None:
        """An operation reached the database: the end of an outage, if there was one.
        `began`: when it tried; an answer to an attempt made before the outage was noticed
        says nothing of now (a database stopping lets some answers through after the first
        failure), so it ends no outage."""
        if self._failing_since is not None and began is not None and began < self._failing_since:
            return
        self._reached_at = now = self.clock()
        if self._failing_since is None:
            return
        took = now - self._failing_since
        held_back = sum(cause.held_back for cause in self._causes.values())
        self._failing_since = None
        self._causes.clear()
        self._log.info(
            "database reachable again after %s s (%s)%s",
            f"{took:.0f}" if took >= 10 else f"{took:.1f}",
            self.where,
            f"; {held_back} repeated warnings were held back" if held_back else "",
        )
