"""What a work may decide, and when a resource is due, on the memory store
under the autojump clock: every time asserted is exact.

* ``return RequeueAfter(s)``: synced now, worked again at now + s, attempts
  start over;
* ``raise Snooze(s)``: worked again at now + s, no attempt spent, no error,
  one more snooze;
* ``raise TerminalError(...)``: degraded at once, error recorded;
* per-kind ``ObjectSettings``: retry policy, max attempts, work timeout;
* ``InformOpts(priority=..., run_at=...)``: claim order and due time.
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, ClassVar

import trio
import trio.testing

import trio_delta as delta
from trio_delta.testing import open_test_client

S = delta.ResourceState


@dataclass
class Task:
    kind: ClassVar[str] = "task"
    key: str

    def id(self) -> str:
        return self.key


@dataclass
class Strict:
    """A kind with its own retry policy, attempts and timeout."""

    kind: ClassVar[str] = "strict"
    key: str

    def id(self) -> str:
        return self.key

    @classmethod
    def settings(cls) -> delta.ObjectSettings:
        return delta.ObjectSettings(
            retry_policy=lambda attempt: 7.0 * attempt, max_attempts=3, work_timeout=2.0
        )


Behaviour = Callable[[delta.Resource[Any], int], Awaitable[object]]


class Recorder(delta.Controller[Any]):
    """Runs ``behaviour(resource, call number)`` and records (key, attempt,
    snoozes, trio time) of every call."""

    def __init__(self, behaviour: Behaviour) -> None:
        self.behaviour = behaviour
        self.calls: list[tuple[str, int, int, float]] = []

    async def inform(self, opts: delta.InformOptions, send: trio.MemorySendChannel[Any]) -> None:
        await send.aclose()

    async def work(self, resource: delta.Resource[Any]) -> Any:
        n = len(self.calls)
        self.calls.append(
            (resource.object_id, resource.attempt, resource.snoozes, trio.current_time())
        )
        return await self.behaviour(resource, n)


def client(*controllers: delta.Controller[Any], max_workers: int = 10) -> Any:
    registry = delta.Controllers()
    for c in controllers:
        delta.add_controller(registry, c)
    config = delta.Config(
        random=random.Random(1),
        client_id="c1",
        inform_interval=-1,
        retry_policy=lambda attempt: 100.0,
        max_attempts=5,
    )
    namespaces = {"default": delta.NamespaceConfig(max_workers=max_workers)}
    return open_test_client(registry, namespaces=namespaces, config=config)


class TaskRecorder(Recorder, delta.Controller[Task]):
    pass


class StrictRecorder(Recorder, delta.Controller[Strict]):
    pass


def offsets(calls: list[tuple[str, int, int, float]], start: float) -> list[float]:
    return [round(t - start, 9) for *_, t in calls]


async def test_requeue_after_works_again_at_exactly_that_time(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async def behaviour(resource: delta.Resource[Any], n: int) -> object:
        if n == 0:
            raise RuntimeError("first attempt fails")
        return delta.RequeueAfter(30) if n < 3 else None

    rec = TaskRecorder(behaviour)
    async with client(rec) as t:
        with t.client.subscribe(delta.EventCategory.OBJECT_SYNCED) as events:
            start = trio.current_time()
            await t.client.inform(Task("t"))
            await t.run_until(lambda: len(rec.calls) == 4)
            await t.run_until_idle()
            row = await t.client.get_resource("task", "t")
            synced = [events.receive_nowait().category for _ in range(3)]
    assert offsets(rec.calls, start) == [0, 100, 130, 160]
    assert [attempt for _, attempt, _, _ in rec.calls] == [1, 2, 1, 1]  # reset by each requeue
    assert row is not None
    assert (row.state, row.attempt, len(row.errors)) == (S.SYNCED, 1, 1)
    assert synced == [delta.EventCategory.OBJECT_SYNCED] * 3


async def test_snooze_spends_no_attempt_and_records_no_error(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async def behaviour(resource: delta.Resource[Any], n: int) -> object:
        if n < 3:
            raise delta.Snooze(10 + n)
        return None

    rec = TaskRecorder(behaviour)
    async with client(rec) as t:
        start = trio.current_time()
        await t.client.inform(Task("s"))
        await t.run_until(lambda: len(rec.calls) == 4)
        await t.run_until_idle()
        row = await t.client.get_resource("task", "s")
    assert offsets(rec.calls, start) == [0, 10, 21, 33]
    assert [(attempt, snoozes) for _, attempt, snoozes, _ in rec.calls] == [
        (1, 0),
        (1, 1),
        (1, 2),
        (1, 3),
    ]
    assert row is not None
    assert (row.state, row.snoozes, row.errors) == (S.SYNCED, 3, ())


async def test_terminal_error_degrades_at_once(autojump_clock: trio.testing.MockClock) -> None:
    async def behaviour(resource: delta.Resource[Any], n: int) -> object:
        raise delta.TerminalError("the account is closed")

    rec = TaskRecorder(behaviour)
    async with client(rec) as t:
        await t.client.inform(Task("x"))
        await t.run_until_idle()
        await trio.sleep(1000)  # nothing retries it
        row = await t.client.get_resource("task", "x")
    assert len(rec.calls) == 1
    assert row is not None
    assert (row.state, row.attempt) == (S.DEGRADED, 1)
    assert [e.error for e in row.errors] == ["TerminalError: the account is closed"]


async def test_a_kind_has_its_own_retry_policy_attempts_and_timeout(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async def slow(resource: delta.Resource[Any], n: int) -> object:
        await trio.sleep(5)  # past the kind's 2 s timeout, well within the client's 60 s
        return None

    async def failing(resource: delta.Resource[Any], n: int) -> object:
        raise RuntimeError("no")

    strict, plain = StrictRecorder(slow), TaskRecorder(failing)
    async with client(strict, plain) as t:
        start = trio.current_time()
        await t.client.inform(Strict("k"))
        await t.client.inform(Task("p"))
        await trio.sleep(50)
        strict_row = await t.client.get_resource("strict", "k")
        plain_row = await t.client.get_resource("task", "p")
    # Timed out at 2 s each time; retried after 7 s, then 14 s; three attempts.
    assert offsets(strict.calls, start) == [0, 9, 25]
    assert strict_row is not None
    assert (strict_row.state, strict_row.max_attempts) == (S.DEGRADED, 3)
    assert strict_row.errors[-1].error == "TimeoutError: work timed out after 2s"
    # The other kind keeps the client's policy (retry in 100 s) and attempts.
    assert offsets(plain.calls, start) == [0]
    assert plain_row is not None
    assert (plain_row.state, plain_row.max_attempts) == (S.FAILED, 5)
    assert plain_row.scheduled_at == plain_row.errors[0].at + timedelta(seconds=100)


async def test_a_high_priority_resource_is_claimed_next(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async def second(resource: delta.Resource[Any], n: int) -> object:
        await trio.sleep(1)
        return None

    rec = TaskRecorder(second)
    async with client(rec, max_workers=2) as t:
        start = trio.current_time()
        await t.client.inform_many([Task(f"low{i:04}") for i in range(1000)])
        await trio.sleep(0.5)
        await t.client.inform(Task("urgent"), delta.InformOpts(priority=9))
        await trio.sleep(1)
    started = {key: round(at - start, 9) for key, _, _, at in rec.calls}
    # Two at work since 0; the next claim, when one ends at 1 s, takes it first.
    assert started["urgent"] == 1.0
    assert sorted(k for k, v in started.items() if v == 1.0) == ["low0002", "urgent"]


async def test_run_at_holds_a_resource_until_then(autojump_clock: trio.testing.MockClock) -> None:
    async def done(resource: delta.Resource[Any], n: int) -> object:
        return None

    rec = TaskRecorder(done)
    async with client(rec) as t:
        start = trio.current_time()
        later = t.client._clock.now() + timedelta(seconds=45)  # pyright: ignore[reportPrivateUsage]
        await t.client.inform(Task("later"), delta.InformOpts(run_at=later))
        await t.client.inform(Task("now"))
        await t.run_until(lambda: len(rec.calls) == 2)
    assert [(key, round(at - start, 9)) for key, _, _, at in rec.calls] == [
        ("now", 0),
        ("later", 45),
    ]
