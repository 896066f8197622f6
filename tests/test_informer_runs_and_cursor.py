"""Informers on Postgres: periodic runs, the cursor, on-demand runs."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import ClassVar

import trio

import trio_delta as delta

from .conftest import sql
from .helpers import wait_until


@dataclass
class Item:
    kind: ClassVar[str] = "item"
    key: str
    made: datetime

    def id(self) -> str:
        return self.key

    def created_at(self) -> datetime:
        return self.made


BASE = datetime(2030, 1, 1, tzinfo=UTC)


class ItemController(delta.Controller[Item]):
    def __init__(self, count: int, *, fail: bool = False) -> None:
        self.count = count
        self.fail = fail
        self.runs: list[delta.InformOptions] = []
        self.worked: list[str] = []

    async def inform(self, opts: delta.InformOptions, send: trio.MemorySendChannel[Item]) -> None:
        self.runs.append(opts)
        async with send:
            for i in range(self.count):
                await send.send(Item(f"k{i}", BASE + timedelta(seconds=i)))
            if self.fail:
                raise RuntimeError("source went away")

    async def work(self, resource: delta.Resource[Item]) -> None:
        self.worked.append(resource.object.key)


def controllers(c: delta.Controller[Item]) -> delta.Controllers:
    out = delta.Controllers()
    delta.add_controller(out, c)
    return out


async def test_informer_runs_at_start_and_advances_the_cursor(
    pg_dsn: str, config: delta.Config
) -> None:
    ctl = ItemController(250)
    async with delta.open_delta_client(pg_dsn, controllers(ctl), config=config):
        await wait_until(lambda: len(set(ctl.worked)) == 250)
    assert ctl.runs[0].after is None
    (cursor,) = sql(pg_dsn, f"select cursor from {config.schema}.controllers where kind='item'")
    assert cursor[0] == BASE + timedelta(seconds=249)


async def test_failed_run_keeps_objects_but_not_the_cursor(
    pg_dsn: str, config: delta.Config
) -> None:
    ctl = ItemController(10, fail=True)
    async with delta.open_delta_client(pg_dsn, controllers(ctl), config=config) as client:
        await wait_until(lambda: len(set(ctl.worked)) == 10)
        await wait_until(lambda: client.stats.informer_failures == 1)
    rows = sql(pg_dsn, f"select cursor, last_error from {config.schema}.controllers")
    assert rows[0][0] is None
    assert "source went away" in rows[0][1]


async def test_schedule_inform_from_a_client_without_the_controller(
    pg_dsn: str, config: delta.Config
) -> None:
    ctl = ItemController(3)
    async with delta.open_delta_client(pg_dsn, controllers(ctl), config=config):
        await wait_until(lambda: len(ctl.runs) == 1)
        async with delta.open_delta_client(pg_dsn, delta.Controllers(), config=config) as other:
            await other.schedule_inform("item", process_existing=True)
            await wait_until(lambda: len(ctl.runs) == 2)
        # process_existing re-works unchanged objects (while the client runs)
        await wait_until(lambda: len(ctl.worked) >= 6)
    assert ctl.runs[1].process_existing
    assert ctl.runs[1].after is None
