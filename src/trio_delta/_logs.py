"""Warnings that repeat, logged at a bounded rate.

When the database goes away, every service retries, and each retry used to
log a warning: a storm of backend kills made a process log ~200 warnings in
30 s, burying the line that said what happened. A :class:`Throttled` logger
lets the first warning of a kind (one message template) through, holds back
repeats for ``interval`` seconds, and then logs the next one with how many
it held back.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import trio

#: Seconds between two warnings of the same kind.
INTERVAL = 10.0


def _now() -> float:
    # Trio's clock when there is one, so a MockClock moves this too.
    try:
        return trio.current_time()
    except RuntimeError:
        return time.monotonic()


class Throttled:
    def __init__(self, logger: logging.Logger, interval: float = INTERVAL) -> None:
        self.logger = logger
        self.interval = interval
        self._last: dict[str, float] = {}
        self._held: dict[str, int] = {}

    def warning(self, msg: str, *args: Any) -> None:
        """``logger.warning(msg, *args)``, unless a warning of the same
        ``msg`` was logged less than ``interval`` seconds ago."""
        now = _now()
        last = self._last.get(msg)
        if last is not None and now - last < self.interval:
            self._held[msg] = self._held.get(msg, 0) + 1
            return
        self._last[msg] = now
        held = self._held.pop(msg, 0)
        if held:
            self.logger.warning(
                msg + " (and %d more like it in the last %gs)",
                *args,
                held,
                self.interval if last is None else now - last,
            )
        else:
            self.logger.warning(msg, *args)
