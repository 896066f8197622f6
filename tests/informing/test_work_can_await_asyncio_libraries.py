"""With ``Config(asyncio=True)``, ``work`` awaits asyncio code through
trio-asyncio; a work timeout cancels the asyncio side, which sees
``CancelledError``; without it, the client says what to set."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import ClassVar

import pytest
import trio
import trio_asyncio

import trio_delta as delta
from trio_delta.testing import open_test_client

from ..models import controllers_for


@dataclass
class Call:
    kind: ClassVar[str] = "call"
    name: str
    seconds: float

    def id(self) -> str:
        return self.name


class AsyncioCaller(delta.Controller[Call]):
    """Work whose every step is asyncio code, as an asyncio SDK would be."""

    def __init__(self) -> None:
        self.log: list[tuple[str, str]] = []

    async def _remote(self, call: Call) -> str:
        loop = asyncio.get_running_loop()  # fails outside an asyncio loop
        assert loop is not None
        try:
            await asyncio.sleep(call.seconds)
        except asyncio.CancelledError:
            self.log.append((call.name, "cancelled on the asyncio side"))
            raise
        return f"answer to {call.name}"

    async def work(self, resource: delta.Resource[Call]) -> None:
        answer = await trio_asyncio.aio_as_trio(self._remote)(resource.object)
        self.log.append((resource.object.name, answer))


async def test_work_awaits_asyncio_and_timeouts_reach_it(pg_dsn: str, schema: str) -> None:
    caller = AsyncioCaller()
    config = delta.Config(schema=schema, asyncio=True, work_timeout=0.3, poll_interval=0.2)
    async with delta.open_delta_client(pg_dsn, controllers_for(caller), config=config) as c:
        with c.subscribe() as events:
            await c.inform(Call("quick", 0.01))
            await c.inform(Call("slow", 30), delta.InformOpts(max_attempts=1))
            with trio.fail_after(10):
                seen = {(await events.receive()).resource.object_id for _ in range(2)}
        assert seen == {"quick", "slow"}
        slow = await c.get_resource("call", "slow")
        assert slow is not None
        assert slow.state is delta.ResourceState.DEGRADED
        assert "work timed out after 0.3s" in slow.errors[-1].error
    assert sorted(caller.log) == [
        ("quick", "answer to quick"),
        ("slow", "cancelled on the asyncio side"),
    ]


async def test_the_test_client_runs_asyncio_work_too() -> None:
    caller = AsyncioCaller()
    config = delta.Config(asyncio=True, client_id="test-client")
    async with open_test_client(controllers_for(caller), config=config) as t:
        await t.client.inform(Call("one", 0.01))
        with trio.fail_after(10):
            await t.run_until(lambda: bool(caller.log))
    assert caller.log == [("one", "answer to one")]


@pytest.mark.filterwarnings("ignore:coroutine '_call_defer' was never awaited")
async def test_asyncio_work_without_the_setting_fails_the_attempt() -> None:
    caller = AsyncioCaller()
    async with open_test_client(controllers_for(caller)) as t:
        await t.client.inform(Call("one", 0.01), delta.InformOpts(max_attempts=1))
        await t.run_until_idle()
        row = await t.client.get_resource("call", "one")
    assert row is not None
    assert row.state is delta.ResourceState.DEGRADED
    assert "runs no asyncio loop: set Config(asyncio=True)" in row.errors[-1].error
    assert caller.log == []
