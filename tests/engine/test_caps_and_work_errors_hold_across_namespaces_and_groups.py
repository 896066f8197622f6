"""Faults a review found in the engine (the first two older than the code
around them), pinned:

* a kind's ``parallelism`` is per client: a client serving two namespaces
  once ran one capped work in each at the same time;
* a work that opens a nursery and, when the work timeout cancels it, has a
  child fail in its cleanup raises an exception group of ``Cancelled`` and
  that error; what the worker's scope left of it escaped the worker and
  failed the whole client. It must fail only that resource;
* a stop waited out the fetcher's backoff after failed claims (up to 5 s).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar

import trio
import trio.testing

import trio_delta as delta
from trio_delta._errors import StoreError
from trio_delta._store.memory.queue import MemoryQueue
from trio_delta._store.params import ClaimRequest
from trio_delta.testing import MemoryStore, open_test_client


@dataclass
class Capped:
    kind: ClassVar[str] = "capped"
    key: str

    def id(self) -> str:
        return self.key

    @classmethod
    def settings(cls) -> delta.ObjectSettings:
        return delta.ObjectSettings(parallelism=1)


class CappedController(delta.Controller[Capped]):
    def __init__(self) -> None:
        self.running = 0
        self.peak = 0
        self.done = 0

    async def inform(self, opts: delta.InformOptions, send: trio.MemorySendChannel[Any]) -> None:
        await send.aclose()

    async def work(self, resource: delta.Resource[Capped]) -> None:
        self.running += 1
        self.peak = max(self.peak, self.running)
        await trio.sleep(1)
        self.running -= 1
        self.done += 1


def config(**kw: Any) -> delta.Config:
    base: dict[str, Any] = {"random": random.Random(1), "client_id": "c1", "inform_interval": -1}
    base.update(kw)
    return delta.Config(**base)


async def test_parallelism_is_per_client_across_namespaces(
    autojump_clock: trio.testing.MockClock,
) -> None:
    ctl = CappedController()
    controllers = delta.Controllers()
    delta.add_controller(controllers, ctl)
    namespaces = {
        "a": delta.NamespaceConfig(max_workers=4),
        "b": delta.NamespaceConfig(max_workers=4),
    }
    async with open_test_client(controllers, namespaces=namespaces, config=config()) as t:
        for i in range(6):
            await t.client.inform(Capped(f"c{i}"), delta.InformOpts(namespace="ab"[i % 2]))
        await t.run_until(lambda: ctl.done == 6)
    assert ctl.peak == 1


@dataclass
class Grouped:
    kind: ClassVar[str] = "grouped"
    key: str

    def id(self) -> str:
        return self.key


class GroupOnTimeout(delta.Controller[Grouped]):
    """Key "bad": a child of the work's own nursery fails in its cleanup
    when the timeout cancels the work. Other keys: quick work."""

    async def inform(self, opts: delta.InformOptions, send: trio.MemorySendChannel[Any]) -> None:
        await send.aclose()

    async def work(self, resource: delta.Resource[Grouped]) -> None:
        if resource.object.key != "bad":
            return

        async def child() -> None:
            try:
                await trio.sleep_forever()
            finally:
                raise ValueError("cleanup failed")

        async with trio.open_nursery() as nursery:
            nursery.start_soon(child)
            await trio.sleep_forever()


async def test_an_error_group_from_a_timed_out_work_fails_only_that_resource(
    autojump_clock: trio.testing.MockClock,
) -> None:
    controllers = delta.Controllers()
    delta.add_controller(controllers, GroupOnTimeout())
    async with open_test_client(controllers, config=config(work_timeout=1)) as t:
        await t.client.inform(Grouped("bad"), delta.InformOpts(max_attempts=1))
        await t.run_until_idle()
        await t.client.inform(Grouped("good"))  # the client still works
        await t.run_until_idle()
        bad = await t.client.get_resource("grouped", "bad")
        good = await t.client.get_resource("grouped", "good")
    assert bad is not None
    assert good is not None
    assert bad.state is delta.ResourceState.DEGRADED
    (error,) = bad.errors
    assert "cleanup failed" in error.error
    assert good.state is delta.ResourceState.SYNCED


class FailingClaimsQueue(MemoryQueue):
    async def claim(
        self, requests: Sequence[ClaimRequest], *, now: datetime, client_id: str
    ) -> list[delta.Resource[Any]]:
        await trio.lowlevel.checkpoint()
        raise StoreError("claiming: the database is unreachable")


class FailingClaims(MemoryStore):
    def __init__(self) -> None:
        super().__init__()
        self.queue = FailingClaimsQueue(self.tables)


async def test_a_stop_ends_the_fetchers_backoff_at_once(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # Claims fail for 10 s, so the fetcher's backoff has grown to seconds
    # when the client stops: the stop must not wait it out.
    controllers = delta.Controllers()
    delta.add_controller(controllers, CappedController())
    async with open_test_client(controllers, config=config(), store=FailingClaims()):
        await trio.sleep(10)
        stop_started = trio.current_time()
    assert trio.current_time() - stop_started < 0.01
