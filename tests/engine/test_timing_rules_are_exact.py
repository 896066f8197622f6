"""The engine's timing rules, on the memory store under the autojump clock.

Every assertion is an exact time: under ``MockClock(autojump_threshold=0)``
the engine only ever wakes at deadlines it set itself.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import timedelta
from typing import ClassVar

import pytest
import trio
import trio.testing

import trio_delta as delta
from trio_delta.testing import MemoryStore, open_test_client


@dataclass
class Job:
    kind: ClassVar[str] = "job"
    key: str
    version: int = 1

    def id(self) -> str:
        return self.key


class JobController(delta.Controller[Job]):
    """Records (key, attempt, trio time) of every work call."""

    def __init__(self, *, fail: bool = False, sleep: float = 0.0, forever: bool = False) -> None:
        self.fail = fail
        self.sleep = sleep
        self.forever = forever
        self.calls: list[tuple[str, int, float]] = []
        self.informs: list[float] = []

    async def inform(self, opts: delta.InformOptions, send: trio.MemorySendChannel[Job]) -> None:
        self.informs.append(trio.current_time())
        await send.aclose()

    async def work(self, resource: delta.Resource[Job]) -> None:
        self.calls.append((resource.object.key, resource.attempt, trio.current_time()))
        if self.forever:
            await trio.sleep_forever()
        if self.sleep:
            await trio.sleep(self.sleep)
        if self.fail:
            raise RuntimeError("nope")


def controllers(c: delta.Controller[Job]) -> delta.Controllers:
    out = delta.Controllers()
    delta.add_controller(out, c)
    return out


def cfg(**kw: object) -> delta.Config:
    base: dict[str, object] = {"random": random.Random(1), "client_id": "c1", "inform_interval": -1}
    base.update(kw)
    return delta.Config(**base)  # type: ignore[arg-type]


async def test_retry_backoff_follows_the_policy_exactly(
    autojump_clock: trio.testing.MockClock,
) -> None:
    ctl = JobController(fail=True)
    async with open_test_client(controllers(ctl), config=cfg()) as t:
        t0 = trio.current_time()
        await t.client.inform(Job("a"), delta.InformOpts(max_attempts=4))
        await t.run_until_idle()
        for _ in range(3):
            await t.advance(100)
        row = await t.client.get_resource("job", "a")
    assert row is not None
    assert row.state is delta.ResourceState.DEGRADED
    # attempt n+1 starts retry_policy(n) = n**4 seconds after attempt n failed
    starts = [round(at - t0, 6) for _, _, at in ctl.calls]
    assert starts == [0.0, 1.0, 17.0, 98.0]
    assert [e.attempt for e in row.errors] == [1, 2, 3, 4]
    assert [(e.at - row.created_at).total_seconds() for e in row.errors] == [0, 1, 17, 98]


async def test_work_timeout_fails_the_attempt_at_the_deadline(
    autojump_clock: trio.testing.MockClock,
) -> None:
    ctl = JobController(sleep=1000)
    async with open_test_client(controllers(ctl), config=cfg(work_timeout=5)) as t:
        await t.client.inform(Job("a"), delta.InformOpts(max_attempts=1))
        await t.run_until_idle()
        row = await t.client.get_resource("job", "a")
    assert row is not None
    assert row.state is delta.ResourceState.DEGRADED
    (error,) = row.errors
    assert error.error == "TimeoutError: work timed out after 5s"
    assert (error.at - row.created_at).total_seconds() == 5


async def test_informer_interval_and_jitter_repeat_exactly(
    autojump_clock: trio.testing.MockClock,
) -> None:
    ctl = JobController()
    config = cfg(inform_interval=3600, inform_jitter=60)
    async with open_test_client(controllers(ctl), config=config) as t:
        t0 = trio.current_time()
        await t.advance(3 * 3600 + 200)
    jitter = random.Random(1)
    expected = [0.0]
    for _ in range(3):
        expected.append(expected[-1] + 3600 + jitter.uniform(0, 60))
    assert [round(x - t0, 6) for x in ctl.informs] == [round(x, 6) for x in expected]


class DeafStore(MemoryStore):
    """Loses every notification, as a Postgres client does while its LISTEN
    connection is down, and says so: its clients poll."""

    notifications_reliable = False

    def __init__(self) -> None:
        super().__init__()
        self.tables.notify = lambda payloads: None  # type: ignore[method-assign]


async def test_poll_fallback_finds_work_without_notifications(
    autojump_clock: trio.testing.MockClock,
) -> None:
    store = DeafStore()
    ctl = JobController()
    # Another client (no controllers) informs; this one never hears a NOTIFY.
    async with open_test_client(controllers(ctl), config=cfg(poll_interval=2.5), store=store) as t:
        await trio.sleep(0.5)
        async with open_test_client(
            delta.Controllers(), store=store, config=cfg(client_id="c2")
        ) as other:
            t0 = trio.current_time()
            await other.client.inform(Job("p"))
        await t.run_until(lambda: bool(ctl.calls))
    # found by the poll, which runs every 2.5 s from the client's start
    assert ctl.calls[0][2] - t0 == pytest.approx(2.0)


async def test_shutdown_is_graceful_then_forced_then_handed_back(
    autojump_clock: trio.testing.MockClock,
) -> None:
    store = MemoryStore()
    ctl = JobController(forever=True)
    async with open_test_client(controllers(ctl), config=cfg(shutdown_grace=7), store=store) as t:
        await t.client.inform(Job("a"))
        await t.run_until(lambda: bool(ctl.calls))
        stop_at = trio.current_time()
    stopped_at = trio.current_time()
    assert stopped_at - stop_at == pytest.approx(7.0)
    record = await store.insights.get_resource("job", "a")
    assert record is not None
    assert record.state is delta.ResourceState.SCHEDULED
    assert record.attempt == 0
    assert record.errors == ()


async def test_leader_takes_over_after_ttl_when_the_leader_vanishes(
    autojump_clock: trio.testing.MockClock,
) -> None:
    store = MemoryStore()
    config_a = cfg(client_id="a", leader_ttl=15)
    config_b = cfg(client_id="b", leader_ttl=15)
    async with open_test_client(delta.Controllers(), store=store, config=config_a) as a:
        await trio.sleep(1)
        assert a.client.is_leader
        async with open_test_client(delta.Controllers(), store=store, config=config_b) as b:
            await trio.sleep(1)
            assert not b.client.is_leader
            # "a" vanishes without resigning: freeze its elector.
            a.client._engine._handles["elector"].scope.cancel()  # type: ignore[attr-defined]
            lost_at = trio.current_time()
            await b.run_until(lambda: b.client.is_leader)
            took = trio.current_time() - lost_at
            leader = await store.control.get_leader("default")
    assert leader is not None
    assert leader.leader_id == "b"
    # a's lease (renewed at most ttl/3 before) must run out; b retries every ttl/3
    assert 10 <= took <= 15 + 5


async def test_a_resigning_leader_is_replaced_at_once(
    autojump_clock: trio.testing.MockClock,
) -> None:
    store = MemoryStore()
    async with open_test_client(delta.Controllers(), store=store, config=cfg(client_id="b")) as b:
        async with open_test_client(
            delta.Controllers(), store=store, config=cfg(client_id="a")
        ) as a:
            await trio.sleep(1)
            leaders = {a.client.is_leader, b.client.is_leader}
            assert leaders == {True, False}
            first = "a" if a.client.is_leader else "b"
        if first == "a":
            t0 = trio.current_time()
            await b.run_until(lambda: b.client.is_leader)
            assert trio.current_time() - t0 < 0.001


async def test_resource_expiry_reworks_at_the_first_maintenance_after_it(
    autojump_clock: trio.testing.MockClock,
) -> None:
    ctl = JobController()
    namespaces = {"default": delta.NamespaceConfig(resource_expiry=600)}
    async with open_test_client(
        controllers(ctl), namespaces=namespaces, config=cfg(maintenance_interval=60)
    ) as t:
        t0 = trio.current_time()
        await t.client.inform(Job("e"))
        await t.run_until_idle()
        await t.advance(700)
    # synced at 0; maintenance every 60 s from 0; first run with
    # synced_at < now - 600 is at 660.
    assert [round(at - t0, 6) for _, _, at in ctl.calls] == [0.0, 660.0]


async def test_rescue_after_work_timeout_plus_grace(
    autojump_clock: trio.testing.MockClock,
) -> None:
    store = MemoryStore()
    ctl = JobController()
    config = cfg(work_timeout=30, rescue_after=20, maintenance_interval=5)
    async with open_test_client(
        delta.Controllers(), store=store, config=cfg(client_id="ghost")
    ) as ghost:
        await ghost.client.inform(Job("r"))
    # A claim by a client that then disappears.
    now = await store.database_now()
    from trio_delta._store.params import ClaimRequest

    (claimed,) = await store.queue.claim(
        [ClaimRequest("default", 1, {"job": None})], now=now, client_id="ghost"
    )
    async with open_test_client(controllers(ctl), store=store, config=config) as t:
        t0 = trio.current_time()
        await t.run_until(lambda: bool(ctl.calls))
        rescued_at = ctl.calls[0][2] - t0
        row = await t.client.get_resource("job", "r")
    assert claimed.attempt == 1
    assert row is not None
    assert row.errors[0].error == "rescued after worker loss"
    # attempted at anchor (t=0 here); rescued at the first maintenance run
    # after 30 + 20 s, i.e. at 55 (runs at 0, 5, ..., 50 see it as not stuck).
    assert rescued_at == pytest.approx(55.0)


@dataclass
class Stamped:
    kind: ClassVar[str] = "stamped"
    key: str
    made: float  # seconds after the anchor

    def id(self) -> str:
        return self.key

    def created_at(self) -> object:
        from trio_delta.testing import DEFAULT_ANCHOR

        return DEFAULT_ANCHOR + timedelta(seconds=self.made)


class StampedController(delta.Controller[Stamped]):
    """Yields the objects 'made' so far; the third run hangs until timeout."""

    def __init__(self) -> None:
        self.runs: list[tuple[float, object]] = []
        self.made = [Stamped("a", 10), Stamped("b", 20)]

    async def inform(
        self, opts: delta.InformOptions, send: trio.MemorySendChannel[Stamped]
    ) -> None:
        self.runs.append((trio.current_time(), opts.after))
        async with send:
            for obj in self.made:
                await send.send(obj)
            if len(self.runs) == 3:
                await trio.sleep_forever()

    async def work(self, resource: delta.Resource[Stamped]) -> None:
        pass


async def test_inform_timeout_and_cursor_are_exact(
    autojump_clock: trio.testing.MockClock,
) -> None:
    from trio_delta.testing import DEFAULT_ANCHOR

    ctl = StampedController()
    out = delta.Controllers()
    delta.add_controller(out, ctl)
    config = cfg(inform_interval=100, inform_jitter=0, inform_timeout=30)
    async with open_test_client(out, config=config) as t:
        t0 = trio.current_time()
        await t.advance(100)  # run 2 at t=100
        ctl.made.append(Stamped("c", 150))
        await t.advance(100 + 30)  # run 3 at t=200 hangs, times out at 230
        state = await t.client.get_informer("stamped")
        await t.advance(100)  # run 4 at t=330 (230 + interval)
    times = [round(at - t0, 6) for at, _ in ctl.runs]
    afters = [after for _, after in ctl.runs]
    assert times == [0.0, 100.0, 200.0, 330.0]
    # The cursor is the newest created_at of a completed run; the timed-out
    # run (which had sent "c", made at 150) did not advance it.
    assert afters == [
        None,
        DEFAULT_ANCHOR + timedelta(seconds=20),
        DEFAULT_ANCHOR + timedelta(seconds=20),
        DEFAULT_ANCHOR + timedelta(seconds=20),
    ]
    assert state is not None
    assert state.last_error == "informer timed out after 30s"
    assert await t.state_of("stamped", "c") is delta.ResourceState.SYNCED


async def test_reworking_a_synced_resource_starts_its_attempts_afresh(
    autojump_clock: trio.testing.MockClock,
) -> None:
    ctl = JobController()
    async with open_test_client(controllers(ctl), config=cfg()) as t:
        await t.client.inform(Job("x"), delta.InformOpts(max_attempts=2))
        await t.run_until_idle()
        for _ in range(3):
            await t.client.invalidate(Job("x"))
            await t.run_until_idle()
        ctl.fail = True
        await t.client.invalidate(Job("x"))
        await t.run_until_idle()
        row = await t.client.get_resource("job", "x")
    # Every round started at attempt 1: the failure is a retry, not degraded.
    assert [attempt for _, attempt, _ in ctl.calls] == [1, 1, 1, 1, 1]
    assert row is not None
    assert (row.state, row.attempt) == (delta.ResourceState.FAILED, 1)
