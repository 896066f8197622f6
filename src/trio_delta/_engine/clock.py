"""The one clock the engine reads.

Trio's clock (so a ``MockClock`` moves the whole engine), anchored once to the
database's ``now()`` so every client on a database agrees on time. Every
timestamp the engine passes to the store comes from here.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import trio


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

