"""Pause, resume and cancel on the memory store under the autojump clock:
a pause stops claims (running work finishes) and informer runs of the kind
at once, a resume restarts them at once, pauses outlive a client, and a
cancel ends a running work through its cancel scope with nothing of it
written afterwards."""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any, ClassVar

import trio
import trio.lowlevel
import trio.testing

import trio_delta as delta
from trio_delta.testing import MemoryStore, open_test_client

S = delta.ResourceState


@dataclass
class Job:
    kind: ClassVar[str] = "job"
    key: str

    def id(self) -> str:
        return self.key


class Jobs(delta.Controller[Job]):
    """Work of ``seconds``; records starts and ends, and runs ``finally``."""

    def __init__(self, seconds: float = 1.0) -> None:
        self.seconds = seconds
        self.starts: dict[str, float] = {}
        self.ended: dict[str, float] = {}
        self.cleaned: dict[str, float] = {}
        self.informs: list[float] = []

    async def inform(self, opts: delta.InformOptions, send: trio.MemorySendChannel[Job]) -> None:
        self.informs.append(trio.current_time())
        await send.aclose()

    async def work(self, resource: delta.Resource[Job]) -> None:
        key = resource.object.key
        self.starts[key] = trio.current_time()
        try:
            await trio.sleep(self.seconds)
            self.ended[key] = trio.current_time()
        finally:
            self.cleaned[key] = trio.current_time()


def open_client(jobs: Jobs, store: MemoryStore | None = None, **config: Any) -> Any:
    controllers = delta.Controllers()
    delta.add_controller(controllers, jobs)
    settings: dict[str, Any] = {"random": random.Random(1), "client_id": "c1"}
    settings.update(config)
    return open_test_client(
        controllers,
        namespaces={"default": delta.NamespaceConfig(max_workers=2)},
        config=delta.Config(**settings),
        store=store,
    )


async def test_pause_stops_claims_and_resume_restarts_them(
    autojump_clock: trio.testing.MockClock,
) -> None:
    jobs = Jobs(seconds=1.0)
    async with open_client(jobs, inform_interval=-1) as t:
        start = trio.current_time()
        for i in range(4):
            await t.client.inform(Job(f"j{i}"))
        await trio.sleep(0.5)  # j0, j1 at work
        assert await t.client.pause(kind="job") is True
        assert await t.client.pause(kind="job") is False
        await trio.sleep(10)
        # The running two finished; nothing else was claimed while paused.
        assert sorted(jobs.ended) == ["j0", "j1"]
        assert sorted(jobs.starts) == ["j0", "j1"]
        assert [p.kind for p in await t.client.list_pauses()] == ["job"]
        assert await t.client.resume(kind="job") is True
        await t.run_until(lambda: len(jobs.ended) == 4)
    resumed_at = start + 10.5
    assert jobs.starts["j2"] == jobs.starts["j3"] == resumed_at


async def test_a_paused_namespace_leaves_other_namespaces_alone(
    autojump_clock: trio.testing.MockClock,
) -> None:
    jobs = Jobs(seconds=1.0)
    controllers = delta.Controllers()
    delta.add_controller(controllers, jobs)
    namespaces = {"red": delta.NamespaceConfig(), "blue": delta.NamespaceConfig()}
    config = delta.Config(random=random.Random(1), client_id="c1", inform_interval=-1)
    async with open_test_client(controllers, namespaces=namespaces, config=config) as t:
        await t.client.pause(namespace="red")
        await t.client.inform(Job("r"), delta.InformOpts(namespace="red"))
        await t.client.inform(Job("b"), delta.InformOpts(namespace="blue"))
        await trio.sleep(5)
        assert sorted(jobs.ended) == ["b"]
        await t.client.resume(namespace="red")
        await t.run_until(lambda: "r" in jobs.ended)


async def test_a_paused_kind_runs_no_informer_and_pauses_outlive_a_client(
    autojump_clock: trio.testing.MockClock,
) -> None:
    store = MemoryStore()
    jobs = Jobs()
    async with open_client(jobs, store, inform_interval=60) as t:
        await trio.sleep(1)
        assert len(jobs.informs) == 1  # the start-up run
        await t.client.pause(kind="job")
        await trio.sleep(300)
        assert len(jobs.informs) == 1  # no periodic runs while paused
    again = Jobs()
    async with open_client(again, store, inform_interval=60) as t:
        await trio.sleep(300)
        assert again.informs == []  # still paused after the restart
        assert await t.client.resume(kind="job") is True
        await trio.sleep(1)
        assert len(again.informs) == 1


async def test_cancel_ends_the_running_work_and_nothing_overwrites_it(
    autojump_clock: trio.testing.MockClock,
) -> None:
    jobs = Jobs(seconds=30.0)
    async with open_client(jobs, inform_interval=-1) as t:
        await t.client.inform(Job("long"))
        await t.client.inform(Job("idle"))
        await trio.sleep(1)
        started = jobs.starts["long"]
        row = await t.client.cancel("job", "long")
        assert row is not None
        assert row.state is S.DELETED
        await trio.lowlevel.checkpoint()  # the cancel is delivered at the work's next checkpoint
        await t.run_until_idle()
        assert "long" not in jobs.ended
        assert jobs.cleaned["long"] == started + 1.0  # its finally ran, at once
        after = await t.client.get_resource("job", "long")
        assert after is not None
        assert after.state is S.DELETED  # no outcome overwrote the cancel
        # A resource not running just changes state.
        await t.run_until(lambda: "idle" in jobs.ended)
        idle = await t.client.cancel("job", "idle")
        assert idle is not None
        assert idle.state is S.DELETED
        assert await t.client.cancel("job", "idle") is None  # deleted already
        assert await t.client.cancel("job", "nothing") is None
        # The slot came back: the client still works.
        await t.client.inform(Job("next"))
        await t.run_until(lambda: "next" in jobs.starts)


@dataclass
class Scarce:
    """A kind whose outside system allows two calls at once, fleet-wide."""

    kind: ClassVar[str] = "scarce"
    key: str

    def id(self) -> str:
        return self.key

    @classmethod
    def settings(cls) -> delta.ObjectSettings:
        return delta.ObjectSettings(global_parallelism=2)


class Gauge(delta.Controller[Scarce]):
    """Shared by several clients: how many works run at once, fleet-wide."""

    def __init__(self) -> None:
        self.running = 0
        self.peak = 0
        self.done: list[str] = []
        self.starts: list[float] = []

    async def work(self, resource: delta.Resource[Scarce]) -> None:
        self.starts.append(trio.current_time())
        self.running += 1
        self.peak = max(self.peak, self.running)
        try:
            await trio.sleep(1)
        finally:
            self.running -= 1
        self.done.append(resource.object.key)


async def test_a_global_cap_holds_across_clients(autojump_clock: trio.testing.MockClock) -> None:
    store = MemoryStore()
    gauge = Gauge()

    async def client(name: str, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        controllers = delta.Controllers()
        delta.add_controller(controllers, gauge)
        config = delta.Config(random=random.Random(1), client_id=name, inform_interval=-1)
        async with open_test_client(controllers, config=config, store=store) as t:
            task_status.started(t)
            await t.run_until(lambda: len(gauge.done) == 12)

    async with trio.open_nursery() as nursery:
        first = await nursery.start(client, "c1")
        await nursery.start(client, "c2")
        await nursery.start(client, "c3")
        start = trio.current_time()
        await first.client.inform_many([Scarce(f"s{i}") for i in range(12)])
    assert gauge.peak == 2
    assert sorted(gauge.done) == sorted(f"s{i}" for i in range(12))
    # Two at a time, a second each: the last pair starts after five seconds,
    # give or take the retries' waits (clients look again every 50 ms).
    assert max(gauge.starts) - start < 5.5


@dataclass
class Limited:
    """A kind whose outside system takes ten calls a second."""

    kind: ClassVar[str] = "limited"
    key: str

    def id(self) -> str:
        return self.key

    @classmethod
    def settings(cls) -> delta.ObjectSettings:
        return delta.ObjectSettings(rate_limit=delta.RateLimit(per_second=10, burst=5))


class Starts(delta.Controller[Limited]):
    def __init__(self) -> None:
        self.at: list[float] = []

    async def work(self, resource: delta.Resource[Limited]) -> None:
        self.at.append(trio.current_time())


async def test_a_rate_limit_spaces_the_starts(autojump_clock: trio.testing.MockClock) -> None:
    starts = Starts()
    controllers = delta.Controllers()
    delta.add_controller(controllers, starts)
    config = delta.Config(random=random.Random(1), client_id="c1", inform_interval=-1)
    async with open_test_client(controllers, config=config) as t:
        begin = trio.current_time()
        await t.client.inform_many([Limited(f"l{i}") for i in range(30)])
        await t.run_until(lambda: len(starts.at) == 30)
        rows = await t.client.list_resources()
    offsets = [round(at - begin, 6) for at in starts.at]
    assert offsets[:5] == [0.0] * 5  # the burst
    # Then ten a second: no 1 s window holds more than rate + burst.
    assert all(sum(1 for o in offsets if w <= o < w + 1) <= 15 for w in offsets)
    assert 2.4 <= offsets[-1] <= 2.6  # 25 more at ten a second
    assert {r.attempt for r in rows} == {1}  # waiting spent no attempt
