"""A leader whose renewal cannot land (the database hangs) stops leading when
its lease runs out, without hearing back, and tries again a third of the
TTL later; an election that then gets through makes it leader again."""

from __future__ import annotations

import random
from datetime import datetime

import trio
import trio.testing

import trio_delta as delta
from trio_delta.testing import MemoryStore, open_test_client


class HangingElections(MemoryStore):
    """Elections hang while ``hang`` is set; records when each was sent."""

    def __init__(self) -> None:
        super().__init__()
        self.sent: list[float] = []
        self.hang = False
        self.released = trio.Event()
        elect = self.control.elect

        async def hanging(
            name: str, *, client_id: str, now: datetime, expires_at: datetime
        ) -> bool:
            self.sent.append(trio.current_time())
            if self.hang:
                await self.released.wait()
            return await elect(name, client_id=client_id, now=now, expires_at=expires_at)

        self.control.elect = hanging  # type: ignore[method-assign]


async def test_a_leader_that_cannot_renew_stops_leading_at_its_lease_end(
    autojump_clock: trio.testing.MockClock,
) -> None:
    store = HangingElections()
    config = delta.Config(client_id="c", random=random.Random(0), inform_interval=-1, leader_ttl=15)
    seen: list[tuple[float, bool]] = []
    async with open_test_client(delta.Controllers(), config=config, store=store) as t:
        t0 = trio.current_time()

        def look() -> None:
            seen.append((trio.current_time() - t0, t.client.is_leader))

        look()
        await trio.sleep(7)
        store.hang = True  # the renewal sent at 10 s never comes back
        await trio.sleep(12.5)
        look()  # 19.5 s: the lease from the renewal at 5 s still holds
        await trio.sleep(0.5)
        look()  # 20 s: it ran out
        await trio.sleep(10)
        store.hang = False
        store.released.set()  # the election sent at 25 s gets through at 30 s
        await trio.testing.wait_all_tasks_blocked()
        look()
        await trio.sleep(8)
    assert seen == [(0, True), (19.5, True), (20, False), (30, True)]
    # Every third of the TTL, the hung one cut off at the lease end (20 s)
    # and the next sent a third of the TTL after that; after the one that
    # got through at 30 s, the rounds go on from there.
    assert [at - t0 for at in store.sent] == [0, 5, 10, 25, 35]
