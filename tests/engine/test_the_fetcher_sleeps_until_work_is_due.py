"""On the memory store the fetcher has no poll: it sleeps until a wake-up or
the earliest due row. So an idle client makes next to no store calls, yet a
retry is still claimed the moment it is due, by any client on the store."""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass
from typing import Any, ClassVar

import trio
import trio.testing

import trio_delta as delta
from trio_delta.testing import MemoryStore, open_test_client

HOUR = 3600.0


@dataclass
class Job:
    kind: ClassVar[str] = "job"
    key: str

    def id(self) -> str:
        return self.key


class JobController(delta.Controller[Job]):
    """Informs nothing; records (client, key, attempt, time) of every work."""

    def __init__(
        self, name: str, calls: list[tuple[str, str, int, float]], *, fail: bool = False
    ) -> None:
        self.name = name
        self.calls = calls
        self.fail = fail

    async def inform(self, opts: delta.InformOptions, send: trio.MemorySendChannel[Job]) -> None:
        await send.aclose()

    async def work(self, resource: delta.Resource[Job]) -> None:
        self.calls.append((self.name, resource.object.key, resource.attempt, trio.current_time()))
        await trio.sleep(1)
        if self.fail:
            raise RuntimeError("nope")


def controllers(c: delta.Controller[Job]) -> delta.Controllers:
    out = delta.Controllers()
    delta.add_controller(out, c)
    return out


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
        self.done = 0

    async def inform(self, opts: delta.InformOptions, send: trio.MemorySendChannel[Capped]) -> None:
        await send.aclose()

    async def work(self, resource: delta.Resource[Capped]) -> None:
        await trio.sleep(30)
        self.done += 1


class CountingStore(MemoryStore):
    """Counts the calls of the engine's periodic loops."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: Counter[str] = Counter()
        for part, name in (
            (self.queue, "claim"),
            (self.control, "claim_inform"),
            (self.control, "elect"),
        ):
            setattr(part, name, self._counting(name, getattr(part, name)))

    def _counting(self, name: str, method: Any) -> Any:
        async def counted(*args: Any, **kwargs: Any) -> Any:
            self.calls[name] += 1
            return await method(*args, **kwargs)

        return counted


async def test_an_idle_client_calls_the_store_only_on_its_schedules(
    autojump_clock: trio.testing.MockClock,
) -> None:
    store = CountingStore()
    calls: list[tuple[str, str, int, float]] = []
    # Default settings: a 1 s poll interval, hourly informs, a 15 s TTL.
    config = delta.Config(client_id="idle", random=random.Random(0))
    async with open_test_client(
        controllers(JobController("idle", calls)), config=config, store=store
    ):
        await trio.sleep(24 * HOUR)
    # Polling every second, its two claim loops claimed 172,800 times a day.
    # Now: at the start, and after informer runs (which wrote nothing here).
    assert store.calls["claim"] <= 4
    # Informers look at their schedule when a run is due, not every 5 s.
    assert store.calls["claim_inform"] <= 2 * 25
    # The leader still renews every third of the TTL, as documented.
    assert store.calls["elect"] == 24 * HOUR / 5 + 1


async def test_a_retry_another_client_failed_is_claimed_when_due(
    autojump_clock: trio.testing.MockClock,
) -> None:
    store = MemoryStore()
    calls: list[tuple[str, str, int, float]] = []

    def config(name: str) -> delta.Config:
        return delta.Config(
            client_id=name,
            random=random.Random(0),
            inform_interval=-1,
            retry_policy=lambda attempt: 60.0,
        )

    async def client_a() -> None:
        ctl = JobController("a", calls, fail=True)
        async with open_test_client(controllers(ctl), config=config("a"), store=store) as a:
            await a.client.inform(Job("x"))
            # Its attempt fails at 1 s, due again at 61 s; a stops long before.
            await trio.sleep(2)

    t0 = trio.current_time()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(client_a)
        await trio.sleep(0.5)
        # b starts while a works x, so b's own look at the queue finds
        # nothing due: only a's failure tells it of the retry.
        ctl_b = JobController("b", calls)
        async with open_test_client(controllers(ctl_b), config=config("b"), store=store) as b:
            with trio.fail_after(300):
                await b.run_until(lambda: len(calls) == 2)
            await b.run_until_idle()
            row = await b.client.get_resource("job", "x")
    assert [(name, attempt, at - t0) for name, _, attempt, at in calls] == [
        ("a", 1, 0.0),
        ("b", 2, 61.0),
    ]
    assert row is not None
    assert (row.state, row.attempted_by) == (delta.ResourceState.SYNCED, "b")


async def test_a_capped_kind_waiting_for_its_turn_wakes_nobody(
    autojump_clock: trio.testing.MockClock,
) -> None:
    store = CountingStore()
    capped = CappedController()
    both = controllers(JobController("c", []))
    delta.add_controller(both, capped)
    config = delta.Config(client_id="c", random=random.Random(0), inform_interval=-1)
    async with open_test_client(both, config=config, store=store) as t:
        t0 = trio.current_time()
        for i in range(3):
            await t.client.inform(Capped(f"k{i}"))
        await t.run_until(lambda: capped.done == 3)
        assert trio.current_time() - t0 == 90  # one at a time
    # Rows of the capped kind are due while its one slot is busy and others
    # are free. Those rows are not what the free slots can take, so they are
    # no reason to look again soon (that was every 50 ms, 1,800 claims);
    # the end of the capped work is.
    assert store.calls["claim"] <= 20
