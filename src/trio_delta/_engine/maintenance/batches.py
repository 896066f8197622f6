"""Running one maintenance statement in bounded batches."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import trio

from ..leader import LeaderElector


async def in_batches(elector: LeaderElector, budget: float,
                     step: Callable[[], Awaitable[int]], batch: int) -> int:
    """Run ``step`` (which handles up to ``batch`` rows) until it handles
    fewer, leadership is lost, or the trio time ``budget`` is reached; the
    total handled."""
    total = 0
    while elector.is_leader and trio.current_time() < budget:
        count = await step()
        total += count
        if count < batch:
            break
    return total
