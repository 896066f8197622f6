"""``ClientStats.informer_runs`` counts runs that ended (failed ones too, also
in ``informer_failures``), not runs that started; with a negative
``inform_interval`` (the client's or the kind's own) a kind gets no run at
start-up, only the ones asked for."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import trio
import trio.testing

import trio_delta as delta
from trio_delta.testing import open_test_client


@dataclass
class Page:
    kind: ClassVar[str] = "page"
    name: str

    def id(self) -> str:
        return self.name


class GatedInformer(delta.Controller[Page]):
    def __init__(self) -> None:
        self.gate = trio.Event()
        self.started = 0
        self.fail = False

    async def inform(self, opts: delta.InformOptions, send: trio.MemorySendChannel[Page]) -> None:
        self.started += 1
        async with send:
            await self.gate.wait()
            if self.fail:
                raise RuntimeError("source down")
            await send.send(Page("p"))

    async def work(self, resource: delta.Resource[Page]) -> None:
        pass


async def test_a_run_counts_when_it_ends(autojump_clock: trio.testing.MockClock) -> None:
    informer = GatedInformer()
    controllers = delta.Controllers()
    delta.add_controller(controllers, informer)
    async with open_test_client(controllers) as t:
        await t.run_until(lambda: informer.started == 1)
        await trio.sleep(10)
        assert (t.client.stats.informer_runs, t.client.stats.informer_failures) == (0, 0)
        informer.gate.set()
        await t.run_until(lambda: t.client.stats.informer_runs == 1)
        assert t.client.stats.informer_failures == 0

        informer.fail = True
        await t.client.schedule_inform("page")
        await t.run_until(lambda: t.client.stats.informer_runs == 2)
        assert t.client.stats.informer_failures == 1


async def test_no_start_up_run_when_periodic_runs_are_off(
    autojump_clock: trio.testing.MockClock,
) -> None:
    informer = GatedInformer()
    informer.gate.set()
    controllers = delta.Controllers()
    delta.add_controller(controllers, informer)
    config = delta.Config(inform_interval=-1, client_id="test-client")
    async with open_test_client(controllers, config=config) as t:
        await trio.sleep(24 * 3600)
        assert informer.started == 0  # a kind seen for the first time, too
        await t.client.schedule_inform("page")
        await t.run_until(lambda: t.client.stats.informer_runs == 1)
        assert informer.started == 1
        state = await t.client.get_informer("page")
        assert state is not None
        assert state.next_inform_at is None


@dataclass
class QuietPage:
    """A kind whose own settings turn periodic runs off."""

    kind: ClassVar[str] = "quiet-page"
    name: str

    def id(self) -> str:
        return self.name

    @classmethod
    def settings(cls) -> delta.ObjectSettings:
        return delta.ObjectSettings(inform_interval=-1)


class QuietInformer(delta.Controller[QuietPage]):
    def __init__(self) -> None:
        self.started = 0

    async def inform(
        self, opts: delta.InformOptions, send: trio.MemorySendChannel[QuietPage]
    ) -> None:
        self.started += 1
        await send.aclose()

    async def work(self, resource: delta.Resource[QuietPage]) -> None:
        pass


async def test_a_kinds_own_negative_interval_skips_its_start_up_run(
    autojump_clock: trio.testing.MockClock,
) -> None:
    quiet, other = QuietInformer(), GatedInformer()
    other.gate.set()
    controllers = delta.Controllers()
    delta.add_controller(controllers, quiet)
    delta.add_controller(controllers, other)
    with trio.fail_after(3 * 24 * 3600):
        async with open_test_client(controllers) as t:  # Config's interval: one hour
            await t.run_until(lambda: other.started == 1)  # the other kind ran at start-up
            await trio.sleep(24 * 3600)
            assert quiet.started == 0
            await t.client.schedule_inform("quiet-page")
            await t.run_until(lambda: quiet.started == 1)
