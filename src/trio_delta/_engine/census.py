"""The census: the leader counts every resource for the observer.

A dashboard wants the cluster's backlog (resources by kind, namespace and
state, and how long the oldest due one has waited), not one process's
share of it. Only the leader counts, so the figure is reported once; a
client that stops leading says so (``census(None)``), so its last figures
are not left standing beside the new leader's.
"""

from __future__ import annotations

from datetime import datetime

import trio

from .._errors import StoreError
from .._logs import Throttled, get_logger
from .._observer import CensusRow, Observer
from .._store.params import ResourceFilter, StateCount
from .context import EngineContext
from .leader import LeaderElector

log = get_logger("trio_delta.maintenance")


def census_rows(counts: list[StateCount], now: datetime) -> list[CensusRow]:
    rows: list[CensusRow] = []
    for c in counts:
        oldest = c.oldest_scheduled_at
        waited = 0.0 if oldest is None or oldest > now else (now - oldest).total_seconds()
        rows.append(CensusRow(c.kind, c.namespace, c.state.value, c.count, waited))
    return rows


class Census:
    def __init__(self, ctx: EngineContext, elector: LeaderElector, observer: Observer) -> None:
        self._storm = Throttled(log)
        self._insights = ctx.store.insights
        self._clock = ctx.clock
        self._elector = elector
        self._observer = observer
        self._interval = ctx.config.census_interval
        self.runs = 0

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        reported = False
        try:
            while True:
                while not self._elector.is_leader:
                    if reported:
                        self._observer.census(None)
                        reported = False
                    await self._elector.changed.wait()
                try:
                    await self.run_once()
                    reported = True
                except StoreError as exc:
                    self._storm.warning("counting resources for the observer failed: %s", exc)
                with trio.move_on_after(self._interval):
                    await self._elector.changed.wait()
        finally:
            if reported:  # stopping: no stale cluster figures left behind
                self._observer.census(None)

    async def run_once(self) -> None:
        now = self._clock.now()
        counts = await self._insights.count_states(ResourceFilter(), now)
        self._observer.census(census_rows(counts, now))
        self.runs += 1
