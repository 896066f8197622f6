"""While rows of the last claim still wait for workers, the fetcher holds
off claiming for the slot or two freed meanwhile (with short work, that was a
claim per row or two, since every take lets the other tasks run); it claims
once half a share of slots is free or the rows have all been taken; with
``prefetch``, once the rows are down to half of it, so that they are back
before the workers need them."""

from __future__ import annotations

import random
from collections import Counter
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any, ClassVar

import trio
import trio.testing

import trio_delta as delta
from trio_delta.testing import MemoryStore, TestClient, open_test_client


@dataclass
class Job:
    kind: ClassVar[str] = "job"
    key: str

    def id(self) -> str:
        return self.key


class JobController(delta.Controller[Job]):
    """Work on ``long-*`` takes 30 s, anything else returns at once; work on
    ``inform-*`` first informs ``late`` (through ``client``)."""

    def __init__(self) -> None:
        self.started: dict[str, float] = {}
        self.client: delta.Client | None = None

    async def inform(self, opts: delta.InformOptions, send: trio.MemorySendChannel[Job]) -> None:
        await send.aclose()

    async def work(self, resource: delta.Resource[Job]) -> None:
        key = resource.object.key
        self.started[key] = trio.current_time()
        if key.startswith("inform-"):
            assert self.client is not None
            await self.client.inform(Job("late"))
        if key.startswith("long-"):
            await trio.sleep(30)


class CountingStore(MemoryStore):
    def __init__(self) -> None:
        super().__init__()
        self.claims: Counter[int] = Counter()  # rows per claim -> claims
        claim = self.queue.claim

        async def counted(*args: Any, **kwargs: Any) -> Any:
            rows = await claim(*args, **kwargs)
            self.claims[len(rows)] += 1
            return rows

        self.queue.claim = counted  # type: ignore[method-assign]


def client_for(
    ctl: delta.Controller[Job], store: MemoryStore, workers: int, prefetch: int = 0
) -> AbstractAsyncContextManager[TestClient]:
    controllers = delta.Controllers()
    delta.add_controller(controllers, ctl)
    config = delta.Config(client_id="w", random=random.Random(0), inform_interval=-1)
    return open_test_client(
        controllers,
        config=config,
        store=store,
        namespaces={"default": delta.NamespaceConfig(max_workers=workers, prefetch=prefetch)},
    )


async def test_short_work_is_claimed_in_large_batches(
    autojump_clock: trio.testing.MockClock,
) -> None:
    store = CountingStore()
    ctl = JobController()
    async with client_for(ctl, store, workers=100) as t:
        async with t.client.transaction() as tx:
            for i in range(2000):
                await t.client.inform_tx(tx, Job(f"j{i}"))
        await t.run_until_idle()
    assert len(ctl.started) == 2000
    # Claims take up to 50 rows (half of 100 workers, two claim loops) and
    # are made once 25 slots are free: ~40-80 claims with rows. Claiming
    # whenever a slot was free made them ~1,000 (of a row or two).
    with_rows = sum(n for size, n in store.claims.items() if size)
    assert with_rows <= 100, store.claims


async def test_a_claim_held_off_is_made_when_the_rows_are_all_taken(
    autojump_clock: trio.testing.MockClock,
) -> None:
    store = MemoryStore()
    ctl = JobController()
    async with client_for(ctl, store, workers=10) as t:
        ctl.client = t.client
        t0 = trio.current_time()
        # All 10 workers' worth in one commit: the first informs "late" as
        # its work begins, while the others still wait in the queue and
        # every slot is taken; then it ends, freeing one slot (of the 3 a
        # claim waits for while rows wait), and the other nine take 30 s.
        async with t.client.transaction() as tx:
            await t.client.inform_tx(tx, Job("inform-0"))
            for i in range(9):
                await t.client.inform_tx(tx, Job(f"long-{i}"))
        with trio.fail_after(300):
            await t.run_until(lambda: "late" in ctl.started)
    # Claimed as soon as the last of the nine was taken, not when the
    # first of them ends (30 s).
    assert ctl.started["late"] - t0 == 0


class SlowClaims(MemoryStore):
    """Every claim takes ``seconds``, as a round trip to a busy database."""

    def __init__(self, seconds: float) -> None:
        super().__init__()
        claim = self.queue.claim

        async def slow(*args: Any, **kwargs: Any) -> Any:
            await trio.sleep(seconds)
            return await claim(*args, **kwargs)

        self.queue.claim = slow  # type: ignore[method-assign]


class Second(delta.Controller[Job]):
    """Work that takes 1 s."""

    def __init__(self) -> None:
        self.starts: list[float] = []

    async def inform(self, opts: delta.InformOptions, send: trio.MemorySendChannel[Job]) -> None:
        await send.aclose()

    async def work(self, resource: delta.Resource[Job]) -> None:
        self.starts.append(trio.current_time())
        await trio.sleep(1)


async def test_with_prefetch_the_queue_is_refilled_before_it_runs_dry(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # Two workers, four rows claimed ahead, claims taking 2 s and works 1 s:
    # waiting for the queue to run dry left both workers idle for the rest
    # of each claim's round trip; claiming once it is down to half the
    # prefetch brings the rows before they are needed.
    ctl = Second()
    async with client_for(ctl, SlowClaims(2.0), workers=2, prefetch=4) as t:
        async with t.client.transaction() as tx:
            for i in range(20):
                await t.client.inform_tx(tx, Job(f"j{i}"))
        t0 = trio.current_time()
        with trio.fail_after(300):
            await t.run_until(lambda: len(ctl.starts) == 20)
    starts = sorted(s - t0 for s in ctl.starts)
    # The first claim comes back at 2 s; from then on both workers always
    # have a row: two starts a second, no gap.
    assert starts == [2.0 + i // 2 for i in range(20)], starts
