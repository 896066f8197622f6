"""An outcome whose row a transaction holds waits aside; the others go on.

The memory store models Postgres' row locks for user transactions, so the
rule the Postgres tests check on the real clock holds here exactly, in
virtual time: while a user's transaction holds a row being worked, other
resources are worked and synced; the held outcome is retried with backoff,
logged once held past ``lock_timeout``, and written when the lock goes.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass
from typing import ClassVar

import pytest
import trio
import trio.testing

import trio_delta as delta
from trio_delta.testing import TestClient, open_test_client

S = delta.ResourceState


@dataclass
class Thing:
    kind: ClassVar[str] = "thing"
    key: str
    version: int = 0

    def id(self) -> str:
        return self.key


class Recorder(delta.Controller[Thing]):
    def __init__(self) -> None:
        self.worked: list[tuple[str, int, float]] = []  # key, version, when
        self.gate = trio.Event()
        self.gated_started = trio.Event()

    async def inform(self, opts: delta.InformOptions, send: trio.MemorySendChannel[Thing]) -> None:
        await send.aclose()

    async def work(self, resource: delta.Resource[Thing]) -> None:
        self.worked.append((resource.object.key, resource.object.version, trio.current_time()))
        if resource.object.key == "held" and resource.object.version == 0:
            self.gated_started.set()
            await self.gate.wait()


async def synced(t: TestClient, key: str) -> bool:
    return await t.state_of("thing", key) is S.SYNCED


async def test_a_held_outcome_waits_aside_while_others_are_written(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="trio_delta")
    ctl = Recorder()
    controllers = delta.Controllers()
    delta.add_controller(controllers, ctl)
    config = delta.Config(
        random=random.Random(1), client_id="c1", inform_interval=-1, lock_timeout=5.0
    )
    async with open_test_client(controllers, config=config) as t:
        await t.client.inform(Thing("held"))
        await ctl.gated_started.wait()
        with trio.fail_after(60):
            async with t.client.transaction() as tx:
                await t.client.inform_tx(tx, Thing("held", version=1))
                held_from = trio.current_time()
                ctl.gate.set()
                for i in range(3):
                    await t.client.inform(Thing(f"other-{i}"))
                    await t.run_until(lambda i=i: synced(t, f"other-{i}"))
                await trio.sleep(10)
                assert await t.state_of("thing", "held") is S.PENDING
            released = trio.current_time()
            await t.run_until(lambda: any(v == 1 for k, v, _ in ctl.worked if k == "held"))
            await t.run_until_idle()
    assert await t.state_of("thing", "held") is S.SYNCED
    # Retried with backoff (at most 2 s apart), so it lands soon after the release.
    (second,) = [when for key, version, when in ctl.worked if key == "held" and version == 1]
    assert released <= second <= released + 2.5
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1, warnings
    assert "thing 'held'" in warnings[0]
    assert "locked by another transaction for 5." in warnings[0]
    assert held_from + 5 <= released
