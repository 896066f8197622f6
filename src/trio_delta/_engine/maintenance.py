"""Maintenance, run by the leader only, every ``maintenance_interval``.

* rescuer: ``pending`` rows whose attempt started more than ``work_timeout +
  rescue_after`` ago belong to a worker that is gone (killed, partitioned);
  they are failed with an error and retried, or degraded when out of attempts.
* expirer: synced rows older than their namespace's ``resource_expiry`` are
  expired so they are worked again.
* cleaner: synced, degraded and deleted rows past their namespace's retention
  are deleted, a bounded batch per statement, looping until done or out of
  this run's time budget.

The leader maintains the namespaces it is configured with, by its own
configuration.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import trio

from .._config import Config, NamespaceConfig, retention_for
from .._errors import StoreError
from .._store.base import Store
from .._types import ResourceState
from .clock import Clock
from .leader import LeaderElector

log = logging.getLogger("trio_delta.maintenance")

RESCUE_BATCH = 1000
EXPIRE_BATCH = 2000
CLEAN_BATCH = 2000
RESCUE_ERROR = "rescued after worker loss"


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


class Maintenance:
    def __init__(
        self,
        store: Store,
        clock: Clock,
        elector: LeaderElector,
        *,
        namespaces: Mapping[str, NamespaceConfig],
        config: Config,
    ) -> None:
        self._store = store
        self._clock = clock
        self._elector = elector
        self._namespaces = namespaces
        self._config = config
        self.stats = MaintenanceStats()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        while True:
            while not self._elector.is_leader:
                await self._elector.changed.wait()
            budget = trio.current_time() + self._config.maintenance_interval / 2
            try:
                await self.run_once(budget)
            except StoreError as exc:
                self.stats.errors += 1
                log.warning("maintenance run failed: %s", exc)
            await trio.sleep(self._config.maintenance_interval)

    async def run_once(self, budget: float) -> None:
        """One pass of rescuer, expirer and cleaner; stops early when leadership
        is lost or the time budget (a trio time) is spent."""
        now = self._clock.now()
        stuck_before = now - timedelta(
            seconds=self._config.work_timeout + self._config.rescue_after
        )
        rescued = await self._loop(
            budget,
            lambda: self._store.rescue(now=self._clock.now(), stuck_before=stuck_before,
                                       limit=RESCUE_BATCH, error=RESCUE_ERROR),
            RESCUE_BATCH,
        )
        if rescued:
            log.warning("rescued %d resources from lost workers", rescued)
        self.stats.rescued += rescued
        for name, ns in self._namespaces.items():
            if ns.resource_expiry is not None:
                synced_before = now - timedelta(seconds=ns.resource_expiry)
                expired = await self._loop(
                    budget,
                    lambda name=name, cut=synced_before: self._store.expire(
                        name, now=self._clock.now(), synced_before=cut, limit=EXPIRE_BATCH),
                    EXPIRE_BATCH,
                )
                if expired:
                    log.info("namespace %s: expired %d synced resources", name, expired)
                self.stats.expired += expired
            for state in (ResourceState.SYNCED, ResourceState.DEGRADED, ResourceState.DELETED):
                if state is ResourceState.SYNCED and ns.resource_expiry is not None:
                    continue  # expired and re-worked, never cleaned
                retention = retention_for(self._config, ns, state.value)
                cut = now - timedelta(seconds=retention)
                cleaned = await self._loop(
                    budget,
                    lambda name=name, state=state, cut=cut: self._store.clean(
                        name, state, updated_before=cut, limit=CLEAN_BATCH),
                    CLEAN_BATCH,
                )
                if cleaned:
                    log.info("namespace %s: cleaned %d %s resources", name, cleaned,
                             state.value)
                    self.stats.cleaned[f"{name}/{state.value}"] += cleaned
        self.stats.runs += 1
        self.stats.last_run_at = now

    async def _loop(self, budget: float, step: Callable[[], Awaitable[int]], batch: int) -> int:
        total = 0
        while self._elector.is_leader and trio.current_time() < budget:
            count = await step()
            total += count
            if count < batch:
                break
        return total
