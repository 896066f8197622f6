"""Work timeouts: one watcher per pool cancels exactly the work that is late.

Workers keep one cancel scope across resources and a watcher task cancels
the scope of a work past its deadline (see ``_engine/workers.py``). These
tests pin what that must never change: every work times out at exactly its
own start + ``work_timeout``, and a cancel that arrives as a work ends never
touches the next resource that worker takes.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import ClassVar

import pytest
import trio
import trio.testing

import trio_delta as delta
from trio_delta.testing import open_test_client, seed_trio_scheduler


@dataclass
class Task:
    kind: ClassVar[str] = "task"
    key: str
    seconds: float

    def id(self) -> str:
        return self.key


class Sleeper(delta.Controller[Task]):
    """Sleeps ``seconds`` (or, for a key in ``events``, waits for that event);
    records (key, start, end or None if cancelled)."""

    def __init__(self) -> None:
        self.calls: dict[str, tuple[float, float | None]] = {}
        self.events: dict[str, trio.Event] = {}

    async def inform(self, opts: delta.InformOptions, send: trio.MemorySendChannel[Task]) -> None:
        await send.aclose()

    async def work(self, resource: delta.Resource[Task]) -> None:
        start = trio.current_time()
        self.calls[resource.object.key] = (start, None)
        if resource.object.key in self.events:
            await self.events[resource.object.key].wait()
        else:
            await trio.sleep(resource.object.seconds)
        self.calls[resource.object.key] = (start, trio.current_time())


def setup(
    max_workers: int, **config: object
) -> tuple[Sleeper, delta.Controllers, dict[str, delta.NamespaceConfig], delta.Config]:
    ctl = Sleeper()
    controllers = delta.Controllers()
    delta.add_controller(controllers, ctl)
    namespaces = {"default": delta.NamespaceConfig(max_workers=max_workers)}
    base: dict[str, object] = {
        "random": random.Random(1),
        "client_id": "c1",
        "inform_interval": -1,
        "work_timeout": 5,
    }
    base.update(config)
    return ctl, controllers, namespaces, delta.Config(**base)  # type: ignore[arg-type]


async def test_each_work_times_out_at_its_own_deadline(
    autojump_clock: trio.testing.MockClock,
) -> None:
    ctl, controllers, namespaces, config = setup(4)
    opts = delta.InformOpts(max_attempts=1)
    async with open_test_client(controllers, namespaces=namespaces, config=config) as t:
        t0 = trio.current_time()
        await t.client.inform(Task("slow-0", 100), opts)
        await t.client.inform(Task("quick-0", 2), opts)
        await trio.sleep(1.5)
        await t.client.inform(Task("slow-1.5", 100), opts)
        await trio.sleep(2)
        await t.client.inform(Task("slow-3.5", 100), opts)
        await t.run_until_idle()
        rows = {r.object_id: r for r in await t.client.list_resources(kind="task")}

    starts = {key: round(start - t0, 6) for key, (start, _) in ctl.calls.items()}
    assert starts == {"slow-0": 0, "quick-0": 0, "slow-1.5": 1.5, "slow-3.5": 3.5}
    assert rows["quick-0"].state is delta.ResourceState.SYNCED
    assert ctl.calls["quick-0"][1] is not None
    for key in ("slow-0", "slow-1.5", "slow-3.5"):
        row = rows[key]
        assert row.state is delta.ResourceState.DEGRADED
        (error,) = row.errors
        assert error.error == "TimeoutError: work timed out after 5s"
        assert (error.at - row.created_at).total_seconds() == 5, key
        assert ctl.calls[key][1] is None  # cancelled, never reached its end


@pytest.mark.parametrize("seed", range(16))
async def test_a_cancel_racing_the_end_of_a_work_spares_the_next(
    autojump_clock: trio.testing.MockClock,
    seed: int,
) -> None:
    # "edge" ends when another task, sleeping exactly the timeout, sets an
    # event: its end and its deadline fall on the same instant and Trio's
    # random tie-break (seeded here) decides whether the watcher's cancel
    # comes before the work is woken, or after (then the cancel arrives late,
    # once the work has ended). With one worker, "next" is taken by the very
    # worker the cancel was aimed at.
    seed_trio_scheduler(seed)
    ctl, controllers, namespaces, config = setup(1)
    ctl.events["edge"] = release = trio.Event()
    opts = delta.InformOpts(max_attempts=1)

    async def release_at_deadline() -> None:
        await trio.sleep(5)
        release.set()

    async with (
        open_test_client(controllers, namespaces=namespaces, config=config) as t,
        trio.open_nursery() as nursery,
    ):
        await t.client.inform(Task("edge", 5), opts)
        nursery.start_soon(release_at_deadline)
        await t.client.inform(Task("next", 1), opts)
        await t.run_until_idle()
        edge = await t.client.get_resource("task", "edge")
        nxt = await t.client.get_resource("task", "next")

    assert edge is not None
    assert nxt is not None
    if ctl.calls["edge"][1] is None:  # the cancel came first: a timeout
        assert edge.state is delta.ResourceState.DEGRADED
    else:  # the work ended first: done, whatever the late cancel
        assert edge.state is delta.ResourceState.SYNCED
    assert nxt.state is delta.ResourceState.SYNCED
    assert nxt.errors == ()
    start, end = ctl.calls["next"]
    assert end is not None
    assert end - start == 1
