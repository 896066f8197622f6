"""The fetcher-to-workers queue wakes (or starts) a few workers at a time,
not one per row, yet every row of a claim starts at once when work awaits
something, and no row is lost to closing or to a cancelled taker."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
import trio
import trio.testing

from trio_delta._engine.rowqueue import TAKERS_AT_ONCE, RowQueue
from trio_delta._types import Resource, ResourceState

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def row(i: int) -> Resource[Any]:
    return Resource(
        i,
        "k",
        f"o{i}",
        "default",
        ResourceState.PENDING,
        1,
        3,
        b"{}",
        b"h",
        {},
        (),
        (),
        T0,
        T0,
        T0,
        T0,
        "me",
        None,
    )


def send(queue: RowQueue, rows: list[Resource[Any]], how: str) -> None:
    """Queue ``rows`` one by one, or all at once as the fetcher queues a claim."""
    if how == "all at once":
        queue.send_all(rows)
    else:
        for r in rows:
            queue.send_nowait(r)


SENDS = pytest.mark.parametrize("how", ["one by one", "all at once"])


class Workers:
    """``n`` tasks taking rows; each 'works' a row by sleeping ``seconds``
    (0: returns at once). Records which task took which row, and when."""

    def __init__(self, queue: RowQueue, n: int, seconds: float) -> None:
        self.queue = queue
        self.n = n
        self.seconds = seconds
        self.taken: list[tuple[int, int, float]] = []  # (worker, row id, time)

    async def run(self, index: int) -> None:
        while True:
            record = await self.queue.take()
            if record is None:
                return
            self.taken.append((index, record.id, trio.current_time()))
            if self.seconds:
                await trio.sleep(self.seconds)


@SENDS
@pytest.mark.parametrize("rows", [1, 10, 250])
async def test_instant_work_is_carried_by_few_workers(
    autojump_clock: trio.testing.MockClock,
    rows: int,
    how: str,
) -> None:
    queue = RowQueue(lambda: False)
    workers = Workers(queue, 250, 0)
    async with trio.open_nursery() as nursery:
        for i in range(workers.n):
            nursery.start_soon(workers.run, i)
        await trio.sleep(1)  # all parked
        send(queue, [row(i) for i in range(rows)], how)
        await trio.sleep(1)
        wakes = queue.wakes
        queue.close()
    assert sorted(r for _, r, _ in workers.taken) == list(range(rows))
    # A memory channel would have woken one worker per row; a few take
    # the rows side by side, however many rows there are.
    assert wakes <= TAKERS_AT_ONCE + 1
    assert len({w for w, _, _ in workers.taken}) <= TAKERS_AT_ONCE + 1


@SENDS
async def test_awaiting_work_still_starts_every_row_at_once(
    autojump_clock: trio.testing.MockClock,
    how: str,
) -> None:
    queue = RowQueue(lambda: False)
    workers = Workers(queue, 50, 10)
    async with trio.open_nursery() as nursery:
        for i in range(workers.n):
            nursery.start_soon(workers.run, i)
        await trio.sleep(1)
        t0 = trio.current_time()
        send(queue, [row(i) for i in range(50)], how)
        await trio.sleep(5)
        # Each row in a worker of its own, all started without waiting for
        # any work to end (the works take 10 s).
        assert len(workers.taken) == 50
        assert len({w for w, _, _ in workers.taken}) == 50
        assert {round(at - t0, 6) for _, _, at in workers.taken} == {0}
        queue.close()


async def test_close_lets_queued_rows_out_then_ends_every_worker() -> None:
    queue = RowQueue(lambda: False)
    workers = Workers(queue, 5, 0)
    for i in range(3):
        queue.send_nowait(row(i))
    queue.close()
    with pytest.raises(trio.ClosedResourceError):
        queue.send_nowait(row(99))
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            for i in range(workers.n):
                nursery.start_soon(workers.run, i)
    assert sorted(r for _, r, _ in workers.taken) == [0, 1, 2]


async def test_a_cancelled_taker_loses_no_row(autojump_clock: trio.testing.MockClock) -> None:
    queue = RowQueue(lambda: False)
    got: list[int] = []

    async def taker(scope_out: list[trio.CancelScope]) -> None:
        with trio.CancelScope() as scope:
            scope_out.append(scope)
            record = await queue.take()
            assert record is not None
            got.append(record.id)

    async with trio.open_nursery() as nursery:
        first: list[trio.CancelScope] = []
        second: list[trio.CancelScope] = []
        nursery.start_soon(taker, first)
        await trio.sleep(1)
        nursery.start_soon(taker, second)
        await trio.sleep(1)
        first[0].cancel()  # the first parked taker leaves
        await trio.sleep(1)
        queue.send_nowait(row(7))  # must reach the second
        await trio.sleep(1)
    assert got == [7]
    assert first[0].cancelled_caught


async def test_take_is_a_checkpoint_even_with_a_row_waiting() -> None:
    # The contract of a Trio memory channel's receive(): a cancel point and
    # a schedule point, whether or not it had to wait.
    queue = RowQueue(lambda: False)
    queue.send_nowait(row(1))
    queue.send_nowait(row(2))
    with trio.CancelScope() as scope:
        scope.cancel()
        await queue.take()  # cancelled before it took anything
    assert scope.cancelled_caught
    with trio.testing.assert_checkpoints():
        first = await queue.take()
    queue.close()
    with trio.testing.assert_checkpoints():
        second = await queue.take()
    assert (first, second) == (row(1), row(2))  # the cancelled take lost no row
    with trio.CancelScope() as scope:
        scope.cancel()
        await queue.take()  # closed and empty: still a cancel point
    assert scope.cancelled_caught


class SpawningPool:
    """Workers started on demand by the queue, at most ``cap``."""

    def __init__(self, nursery: trio.Nursery, cap: int, seconds: float) -> None:
        self.queue = RowQueue(self.spawn)
        self.nursery = nursery
        self.cap = cap
        self.workers = Workers(self.queue, 0, seconds)

    def spawn(self) -> bool:
        if self.workers.n >= self.cap:
            return False
        self.workers.n += 1
        self.nursery.start_soon(self.run, self.workers.n - 1)
        return True

    async def run(self, index: int) -> None:
        self.queue.started()
        await self.workers.run(index)


@pytest.mark.parametrize(("seconds", "started"), [(0, TAKERS_AT_ONCE + 1), (10, 40)])
async def test_workers_are_started_only_as_rows_need_them(
    autojump_clock: trio.testing.MockClock,
    seconds: float,
    started: int,
) -> None:
    async with trio.open_nursery() as nursery:
        pool = SpawningPool(nursery, cap=40, seconds=seconds)
        t0 = trio.current_time()
        for i in range(40):
            pool.queue.send_nowait(row(i))
        await trio.sleep(1)
        # Instant work: a few tasks did it all, side by side. Awaiting
        # work: a task per row, every one started at once.
        assert pool.workers.n == started
        assert len(pool.workers.taken) == 40
        assert {round(at - t0, 6) for _, _, at in pool.workers.taken} == {0}
        for i in range(40, 50):  # more than the cap allows at once
            pool.queue.send_nowait(row(i))
        await trio.sleep(30)
        assert pool.workers.n <= 40
        assert sorted(r for _, r, _ in pool.workers.taken) == list(range(50))
        pool.queue.close()
