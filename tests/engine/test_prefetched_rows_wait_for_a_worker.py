"""``NamespaceConfig(prefetch=N)`` claims up to N rows beyond the free
workers: they wait in the client, pending in the store, and a worker whose
work ends takes the next one at once. No more than ``max_workers`` works
run together, and a graceful stop works the rows already claimed."""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any, ClassVar

import pytest
import trio
import trio.testing

import trio_delta as delta
from trio_delta.testing import open_test_client


@dataclass
class Job:
    kind: ClassVar[str] = "job"
    key: str

    def id(self) -> str:
        return self.key


class Jobs(delta.Controller[Job]):
    """Work of 1 s that counts how many run at once, and when each starts."""

    def __init__(self) -> None:
        self.running = 0
        self.peak = 0
        self.starts: list[float] = []

    async def inform(self, opts: delta.InformOptions, send: trio.MemorySendChannel[Any]) -> None:
        await send.aclose()

    async def work(self, resource: delta.Resource[Job]) -> None:
        self.starts.append(trio.current_time())
        self.running += 1
        self.peak = max(self.peak, self.running)
        await trio.sleep(1)
        self.running -= 1


def controllers_of(jobs: Jobs) -> delta.Controllers:
    controllers = delta.Controllers()
    delta.add_controller(controllers, jobs)
    return controllers


S = delta.ResourceState
CONFIG = delta.Config(random=random.Random(1), client_id="c1", inform_interval=-1)


async def pending(t: Any) -> int:
    rows = await t.client.list_resources()
    return sum(1 for r in rows if r.state is delta.ResourceState.PENDING)


async def test_prefetched_rows_are_claimed_but_not_worked_beyond_max_workers(
    autojump_clock: trio.testing.MockClock,
) -> None:
    jobs = Jobs()
    namespaces = {"default": delta.NamespaceConfig(max_workers=2, prefetch=3)}
    async with open_test_client(controllers_of(jobs), namespaces=namespaces, config=CONFIG) as t:
        start = trio.current_time()
        for i in range(10):
            await t.client.inform(Job(f"j{i}"))
        await trio.sleep(0.5)
        # Two at work and more waiting: at most max_workers + prefetch claimed.
        assert jobs.running == 2
        assert 2 < await pending(t) <= 5
        await t.run_until_idle()
        rows = await t.client.list_resources()
    assert [r.state for r in rows] == [delta.ResourceState.SYNCED] * 10
    assert jobs.peak == 2
    # Two at a time, each next one started the moment a work ended.
    assert [round(s - start, 6) for s in jobs.starts] == [float(i // 2) for i in range(10)]


async def test_without_prefetch_only_free_workers_are_claimed(
    autojump_clock: trio.testing.MockClock,
) -> None:
    jobs = Jobs()
    namespaces = {"default": delta.NamespaceConfig(max_workers=2)}
    async with open_test_client(controllers_of(jobs), namespaces=namespaces, config=CONFIG) as t:
        for i in range(10):
            await t.client.inform(Job(f"j{i}"))
        await trio.sleep(0.5)
        assert (jobs.running, await pending(t)) == (2, 2)
        await t.run_until_idle()


async def test_a_graceful_stop_works_the_prefetched_rows(
    autojump_clock: trio.testing.MockClock,
) -> None:
    jobs = Jobs()
    namespaces = {"default": delta.NamespaceConfig(max_workers=2, prefetch=3)}
    store = delta.testing.MemoryStore()
    async with open_test_client(
        controllers_of(jobs), namespaces=namespaces, config=CONFIG, store=store
    ) as t:
        for i in range(10):
            await t.client.inform(Job(f"j{i}"))
        await trio.sleep(0.5)
        claimed = await pending(t)
        assert claimed > 2  # some claimed ahead of the two workers
    # A client that works another namespace only reads the rows.
    elsewhere = {"elsewhere": delta.NamespaceConfig()}
    async with open_test_client(
        controllers_of(Jobs()), namespaces=elsewhere, config=CONFIG, store=store
    ) as t:
        rows = await t.client.list_resources()
    states = sorted(r.state.value for r in rows)
    # Those claimed were worked before the client stopped; none is left pending.
    assert states == ["scheduled"] * (10 - claimed) + ["synced"] * claimed


@pytest.mark.parametrize("bad", [-1, 1.5, True])
def test_prefetch_must_be_a_whole_number_of_rows(bad: Any) -> None:
    with pytest.raises(delta.ConfigError, match="prefetch"):
        delta.NamespaceConfig(prefetch=bad)


async def test_a_row_deleted_while_claimed_ahead_is_never_worked(
    autojump_clock: trio.testing.MockClock,
) -> None:
    jobs = Jobs()
    namespaces = {"default": delta.NamespaceConfig(max_workers=1, prefetch=2)}
    async with open_test_client(controllers_of(jobs), namespaces=namespaces, config=CONFIG) as t:
        start = trio.current_time()
        for key in ("a", "b"):
            await t.client.inform(Job(key))
        await trio.sleep(0.5)  # a at work, b claimed ahead
        assert await pending(t) == 2
        cancelled = await t.client.cancel("job", "b")
        assert cancelled is not None
        await t.client.inform(Job("c"))  # b's place is free again
        await t.run_until_idle()
        rows = {r.object_id: r.state for r in await t.client.list_resources()}
    assert rows == {"a": S.SYNCED, "b": S.DELETED, "c": S.SYNCED}
    assert [round(s - start, 6) for s in jobs.starts] == [0.0, 1.0]  # a, then c: no b
