"""An informer batch is written when it holds ``batch_size`` objects, or
``flush_interval`` after its first object was taken, whichever comes first;
while a batch is not full the writer looks for more objects every
millisecond, not at each object (so a fast informer fills the buffer)."""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

import pytest
import trio
import trio.testing

import trio_delta as delta
from trio_delta._engine.informers import LOOK_INTERVAL
from trio_delta._objects import PreparedObject
from trio_delta._store.memory.queue import MemoryQueue
from trio_delta._store.memory.tables import Tables
from trio_delta._store.params import UpsertParams
from trio_delta.testing import MemoryStore, open_test_client


@dataclass
class Doc:
    kind: ClassVar[str] = "doc"
    key: str

    def id(self) -> str:
        return self.key


class Bursty(delta.Controller[Doc]):
    """Sends ``bursts`` of objects (each burst at once), pausing between."""

    def __init__(self, bursts: list[int], pause: float) -> None:
        self.bursts = bursts
        self.pause = pause
        self.t0 = 0.0

    async def inform(self, opts: delta.InformOptions, send: trio.MemorySendChannel[Doc]) -> None:
        self.t0 = trio.current_time()
        n = 0
        async with send:
            for size in self.bursts:
                for _ in range(size):
                    await send.send(Doc(f"d{n}"))
                    n += 1
                await trio.sleep(self.pause)

    async def work(self, resource: delta.Resource[Doc]) -> None:
        pass


class RecordingQueue(MemoryQueue):
    def __init__(self, tables: Tables) -> None:
        super().__init__(tables)
        self.upserts: list[tuple[float, int]] = []

    async def upsert_quiet(self, items: Sequence[PreparedObject], params: UpsertParams) -> None:
        self.upserts.append((trio.current_time(), len(items)))
        await super().upsert_quiet(items, params)


class RecordingStore(MemoryStore):
    def __init__(self) -> None:
        super().__init__()
        self.queue = RecordingQueue(self.tables)


async def _run_once(ctl: delta.Controller[Doc], **settings: float) -> RecordingStore:
    store = RecordingStore()
    controllers = delta.Controllers()
    delta.add_controller(controllers, ctl)
    config = delta.Config(random=random.Random(1), client_id="c1", inform_interval=3600, **settings)
    async with open_test_client(controllers, config=config, store=store) as t:
        await t.run_until(lambda: bool(store.queue.upserts) and t.client.stats.informer_runs == 1)
    return store


async def test_batches_fill_up_or_flush_after_the_interval(
    autojump_clock: trio.testing.MockClock,
) -> None:
    ctl = Bursty([25, 3, 0], pause=1.0)
    store = await _run_once(ctl, batch_size=10, flush_interval=0.25)
    sizes = [n for _, n in store.queue.upserts]
    times = [round(at - ctl.t0, 6) for at, _ in store.queue.upserts]
    # 25 at once: the writer takes the first, looks again a millisecond
    # later and finds the buffer full (20): two full batches then, the last
    # 5 an interval after their first was taken; the informer, held by the
    # full buffer until that look, sleeps its second, and its burst of 3
    # goes one interval after it came.
    look = LOOK_INTERVAL
    assert sizes == [10, 10, 5, 3]
    assert times == [look, look, look + 0.25, look + 1.0 + 0.25]


class Steady(delta.Controller[Doc]):
    """Sends ``count`` objects, one every ``every`` seconds, then returns."""

    def __init__(self, count: int, every: float) -> None:
        self.count = count
        self.every = every
        self.t0 = 0.0
        self.returned_at = 0.0

    async def inform(self, opts: delta.InformOptions, send: trio.MemorySendChannel[Doc]) -> None:
        self.t0 = trio.current_time()
        async with send:
            for n in range(self.count):
                await send.send(Doc(f"d{n}"))
                await trio.sleep(self.every)
        self.returned_at = trio.current_time()

    async def work(self, resource: delta.Resource[Doc]) -> None:
        pass


async def test_the_last_batch_goes_when_the_informer_returns(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # A long interval: the last, part-full batch must not wait for it once
    # the informer has returned (nothing more can come).
    ctl = Steady(3, every=0.0)
    store = await _run_once(ctl, batch_size=10, flush_interval=10.0)
    assert [n for _, n in store.queue.upserts] == [3]
    assert [at - ctl.returned_at for at, _ in store.queue.upserts] == [0.0]


async def test_a_long_interval_never_holds_a_steady_informer_back(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # 100 objects, one a millisecond, batches of 10, a 10 s interval: each
    # batch is noticed full within a look, so the informer never waits on a
    # full buffer and the run takes its own pace, not the interval's.
    ctl = Steady(100, every=0.001)
    store = await _run_once(ctl, batch_size=10, flush_interval=10.0)
    assert [n for _, n in store.queue.upserts] == [10] * 10
    assert ctl.returned_at - ctl.t0 == pytest.approx(0.1)
    assert store.queue.upserts[-1][0] - ctl.t0 <= 0.1 + LOOK_INTERVAL
