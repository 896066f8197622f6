"""A client whose clock is minutes off the database's (the database host's
clock stepped back after it anchored, or its VM paused) re-anchors before it
judges other clients' times: it rescues nothing live, and what it informs
is claimable by the others at once."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import ClassVar

import pytest
import trio

import trio_delta as delta
import trio_delta._running as client_module
from tests.conftest import sql
from tests.helpers import wait_until
from trio_delta._engine.clock import Clock

SKEW = timedelta(seconds=300)


@dataclass
class Job:
    kind: ClassVar[str] = "skew-job"
    name: str

    def id(self) -> str:
        return self.name


class SlowJobs(delta.Controller[Job]):
    def __init__(self) -> None:
        self.started: dict[str, float] = {}

    async def work(self, resource: delta.Resource[Job]) -> None:
        self.started[resource.object.name] = trio.current_time()
        await trio.sleep(4)


class SkewedClock(Clock):
    def __init__(self, anchor: datetime) -> None:
        super().__init__(anchor + SKEW)


@contextmanager
def skewed_clocks(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Clients started in the block anchor their clocks 300 s ahead."""
    monkeypatch.setattr(client_module, "Clock", SkewedClock)
    try:
        yield
    finally:
        monkeypatch.setattr(client_module, "Clock", Clock)


async def test_a_client_300_s_ahead_rescues_nothing_live_and_informs_for_now(
    pg_dsn: str, schema: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="trio_delta")
    config = delta.Config(
        schema=schema,
        maintenance_interval=0.5,
        leader_ttl=3,
        work_timeout=5,
        rescue_after=1,
        poll_interval=0.2,
    )
    jobs = SlowJobs()
    workers = delta.Controllers()
    delta.add_controller(workers, jobs)
    with skewed_clocks(monkeypatch):
        skewed_cm = delta.open_delta_client(pg_dsn, delta.Controllers(), config=config)
        skewed = await skewed_cm.__aenter__()
    try:
        await wait_until(lambda: skewed.is_leader)  # it runs maintenance
        async with delta.open_delta_client(pg_dsn, workers, config=config) as worker:
            informed_at = trio.current_time()
            for i in range(5):
                await skewed.inform(Job(f"j{i}"))
            # claimable at once: the worker starts each within moments
            await wait_until(lambda: len(jobs.started) == 5)
            assert max(jobs.started.values()) - informed_at < 2
            # The works run 4 s, past several maintenance passes of the
            # skewed leader: none may be rescued.
            await wait_until(lambda: worker.stats.outcomes_written == 5, within=15)
            assert skewed.stats.maintenance.runs >= 3
            assert skewed.stats.maintenance.rescued == 0
    finally:
        await skewed_cm.__aexit__(None, None, None)
    rows = sql(pg_dsn, f'select state, attempt, errors::text from "{schema}".resources')
    assert rows == [("synced", 1, "[]")] * 5
    assert any("re-anchored" in r.getMessage() and "300" in r.getMessage() for r in caplog.records)
