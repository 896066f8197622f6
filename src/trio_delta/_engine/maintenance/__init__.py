"""Maintenance, run by the leader only, every ``maintenance_interval``.

Three services, each in a module of its own with its own configuration and
a ``run_once``: the rescuer, the expirer and the cleaner. A pass runs them
in that order, within half an interval's time budget, and stops early when
leadership is lost. The leader maintains the namespaces it is configured
with, by its own configuration.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

import trio

from ..._config import NamespaceConfig
from ..._errors import StoreError
from ..._logs import Throttled, get_logger
from ..clock import ClockSync
from ..context import EngineContext
from ..leader import LeaderElector
from .cleaner import Cleaner, CleanerConfig
from .expirer import Expirer, ExpirerConfig
from .rescuer import Rescuer, RescuerConfig

log = get_logger("trio_delta.maintenance")


@dataclass
class MaintenanceStats:
    """Counts of what this client's maintenance did (while it was leader)."""

    runs: int = 0
    rescued: int = 0
    expired: int = 0
    cleaned: Counter[str] = field(default_factory=Counter[str])
    """Deleted rows by ``"namespace/state"``."""
    errors: int = 0
    last_run_at: datetime | None = None

    def snapshot(self) -> MaintenanceStats:
        return MaintenanceStats(
            self.runs,
            self.rescued,
            self.expired,
            Counter(self.cleaned),
            self.errors,
            self.last_run_at,
        )


class Maintenance:
    def __init__(
        self,
        ctx: EngineContext,
        elector: LeaderElector,
        clock_sync: ClockSync,
        *,
        namespaces: Mapping[str, NamespaceConfig],
    ) -> None:
        # Retries of one failure: not a warning each (per client: a
        # throttle shared across clients would hide one's first warning).
        self._storm = Throttled(log)
        self._clock = ctx.clock
        self._clock_sync = clock_sync
        self._elector = elector
        self._interval = ctx.config.maintenance_interval
        self.rescuer = Rescuer(
            ctx, elector, RescuerConfig.of(ctx.config, namespaces, ctx.controllers)
        )
        self.expirer = Expirer(ctx, elector, ExpirerConfig.of(namespaces))
        self.cleaner = Cleaner(ctx, elector, CleanerConfig.of(ctx.config, namespaces))
        self.stats = MaintenanceStats()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        while True:
            while not self._elector.is_leader:
                await self._elector.changed.wait()
            budget = trio.current_time() + self._interval / 2
            try:
                await self.run_once(budget)
            except StoreError as exc:
                self.stats.errors += 1
                self._storm.warning("maintenance run failed: %s", exc)
            await trio.sleep(self._interval)

    async def run_once(self, budget: float) -> None:
        """One pass of rescuer, expirer and cleaner; stops early when leadership
        is lost or the time budget (a trio time) is spent."""
        # What is stuck or expired is judged against other clients' times.
        await self._clock_sync.sync()
        started = self._clock.now()
        self.stats.rescued += await self.rescuer.run_once(budget)
        self.stats.expired += await self.expirer.run_once(budget)
        self.stats.cleaned.update(await self.cleaner.run_once(budget))
        self.stats.runs += 1
        self.stats.last_run_at = started
