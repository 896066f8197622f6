"""What the maintenance services share: running a statement in bounded batches."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

import trio

from ..context import EngineContext
from ..leader import LeaderElector

C = TypeVar("C")


class MaintenanceService(Generic[C]):
    """A leader-only service with a configuration of its own (``C``)."""

    def __init__(self, ctx: EngineContext, elector: LeaderElector, config: C) -> None:
        self._control = ctx.store.control
        self._clock = ctx.clock
        self._elector = elector
        self.config = config

    async def batches(self, budget: float, step: Callable[[], Awaitable[int]], batch: int) -> int:
        """Run ``step`` (which handles up to ``batch`` rows) until it handles
        fewer, leadership is lost, or the trio time ``budget`` is reached;
        the total handled."""
        total = 0
        while self._elector.is_leader and trio.current_time() < budget:
            count = await step()
            total += count
            if count < batch:
                break
        return total
