"""The connection budget (docs/deployment.md): what a client holds at most.

By default: the pool (``pool_size``, opened on demand), up to five
connections of its own for the hot paths (two claim lanes, outcomes,
informer batches, the leader) and one for LISTEN. With
``dedicated_connections=False`` and ``listen=False``, at most ``pool_size``.
Counted on the server, by the DSN's ``application_name``, while the client
claims, works, informs and runs its informer and its leader.
"""

from __future__ import annotations

import dataclasses
import uuid
from dataclasses import dataclass
from typing import ClassVar

import pytest
import trio

import trio_delta as delta

from .conftest import sql

POOL_SIZE = 3


@dataclass
class Item:
    kind: ClassVar[str] = "item"
    key: str

    def id(self) -> str:
        return self.key

    @classmethod
    def settings(cls) -> delta.ObjectSettings:
        return delta.ObjectSettings(inform_interval=0.3)


class Items(delta.Controller[Item]):
    def __init__(self) -> None:
        self.runs = 0

    async def inform(self, opts: delta.InformOptions, send: trio.MemorySendChannel[Item]) -> None:
        self.runs += 1
        async with send:
            for i in range(50):
                await send.send(Item(f"informed-{self.runs}-{i}"))

    async def work(self, resource: delta.Resource[Item]) -> None:
        await trio.sleep(0.01)


def most_connections_seen(dsn: str, app: str, samples: list[int]) -> None:
    rows = sql(dsn, "select count(*) from pg_stat_activity where application_name = %s", [app])
    samples.append(int(rows[0][0]))


@pytest.mark.parametrize(
    ("settings", "most"),
    [
        ({}, POOL_SIZE + 5 + 1),
        ({"dedicated_connections": False, "listen": False}, POOL_SIZE),
        ({"dedicated_connections": False}, POOL_SIZE + 1),
    ],
    ids=["default", "small-footprint", "pool-and-listen"],
)
async def test_a_client_holds_the_connections_it_says(
    pg_dsn: str, config: delta.Config, settings: dict[str, bool], most: int
) -> None:
    app = f"td-budget-{uuid.uuid4().hex[:8]}"
    dsn = f"{pg_dsn} application_name={app}"
    cfg = dataclasses.replace(
        config, pool_size=POOL_SIZE, inform_jitter=0, leader_ttl=1.0, **settings
    )
    controllers = delta.Controllers()
    items = Items()
    delta.add_controller(controllers, items)
    samples: list[int] = []
    async with delta.open_delta_client(
        dsn, controllers, namespaces={"default": delta.NamespaceConfig(max_workers=20)}, config=cfg
    ) as client:
        with trio.fail_after(20):
            while items.runs < 3:
                await client.inform_many([Item(f"direct-{items.runs}-{i}") for i in range(20)])
                await trio.to_thread.run_sync(most_connections_seen, pg_dsn, app, samples)
                await trio.sleep(0.05)
            while len(await client.list_resources(state=delta.ResourceState.SYNCED)) < 150:
                await trio.to_thread.run_sync(most_connections_seen, pg_dsn, app, samples)
                await trio.sleep(0.05)
        assert client.is_leader
    print(f"{settings}: at most {max(samples)} connections seen (budget {most})")
    assert 0 < max(samples) <= most, samples
