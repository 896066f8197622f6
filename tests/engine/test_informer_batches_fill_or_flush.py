"""An informer batch is written when it holds ``batch_size`` objects, or
``flush_interval`` after its first object was taken, whichever comes first;
while a batch is not full the writer looks for more objects every eighth of
the interval, not at each object (so a fast informer fills the buffer)."""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

import trio
import trio.testing

import trio_delta as delta
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


async def test_batches_fill_up_or_flush_after_the_interval(
    autojump_clock: trio.testing.MockClock,
) -> None:
    store = RecordingStore()
    ctl = Bursty([25, 3, 0], pause=1.0)
    controllers = delta.Controllers()
    delta.add_controller(controllers, ctl)
    config = delta.Config(
        random=random.Random(1),
        client_id="c1",
        batch_size=10,
        flush_interval=0.25,
        inform_interval=3600,
    )
    async with open_test_client(controllers, config=config, store=store) as t:
        await t.run_until(lambda: sum(n for _, n in store.queue.upserts) == 28)
    sizes = [n for _, n in store.queue.upserts]
    times = [round(at - ctl.t0, 6) for at, _ in store.queue.upserts]
    # 25 at once: the writer takes the first, looks again an eighth of the
    # interval later and finds the buffer full (20): two full batches then,
    # the last 5 an interval after their first was taken; the informer,
    # held by the full buffer until that look, sleeps its second, and its
    # burst of 3 goes one interval after it came.
    look = 0.25 / 8
    assert sizes == [10, 10, 5, 3]
    assert times == [look, look, look + 0.25, look + 1.0 + 0.25]
