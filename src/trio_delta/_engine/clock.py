"""The one clock the engine reads.

Trio's clock (so a ``MockClock`` moves the whole engine), anchored to the
database's ``now()`` so every client on a database agrees on time. Every
timestamp the engine passes to the store comes from here.

An anchor taken once goes stale: the database host's clock may be stepped,
or this process's VM paused (its monotonic clock stands still meanwhile).
A client minutes off would rescue others' live work, schedule its informs
minutes late, or judge leases wrongly. So the clock is checked against the
database before the decisions that compare times across clients: before
every maintenance pass, and before a leader election round when the last
check is a lease (``leader_ttl``) old; it is re-anchored when it drifted.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta

import trio

from .._logs import get_logger

log = get_logger("trio_delta.clock")

#: Drift below this is a round trip's noise, not a clock that moved.
TOLERANCE = 0.25


class Clock:
    def __init__(self, anchor: datetime) -> None:
        self._anchor = anchor
        self._t0 = trio.current_time()

    def now(self) -> datetime:
        """The current time as the database sees it."""
        return self._anchor + timedelta(seconds=trio.current_time() - self._t0)

    def trio_time(self, at: datetime) -> float:
        """The ``trio.current_time()`` value at which ``at`` arrives."""
        return self._t0 + (at - self._anchor).total_seconds()

    def resync(self, database_now: datetime) -> float:
        """Re-anchor to ``database_now`` (just read) if we drifted from it by
        more than the tolerance; returns the drift in seconds (positive: we
        were behind the database)."""
        drift = (database_now - self.now()).total_seconds()
        if abs(drift) > TOLERANCE:
            self._anchor = database_now
            self._t0 = trio.current_time()
            log.warning(
                "this client's clock was %.1fs %s the database's; re-anchored",
                abs(drift),
                "behind" if drift > 0 else "ahead of",
            )
        return drift


class ClockSync:
    """Keeps a :class:`Clock` anchored to the database."""

    def __init__(self, clock: Clock, database_now: Callable[[], Awaitable[datetime]]) -> None:
        self._clock = clock
        self._database_now = database_now
        self._checked_at = -math.inf  # trio time of the last check

    async def sync(self, max_age: float = 0.0) -> None:
        """Check the clock against the database's now, unless it was checked
        less than ``max_age`` seconds ago (raises :class:`StoreError` if the
        database cannot say its time)."""
        if trio.current_time() - self._checked_at < max_age:
            return
        self._clock.resync(await self._database_now())
        self._checked_at = trio.current_time()
