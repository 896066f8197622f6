"""A namespace's ``resource_expiry`` makes the leader expire synced resources
older than it, so they are worked again; resources of other namespaces, or
synced more recently, are left alone. ``resource_expiry`` cannot be combined
with ``synced_retention``."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import ClassVar

import pytest

import trio_delta as delta

from .conftest import sql
from .helpers import wait_until

EXPIRY = 600.0


@dataclass
class Item:
    kind: ClassVar[str] = "item"
    key: str

    def id(self) -> str:
        return self.key


class Recorder(delta.Controller[Item]):
    def __init__(self) -> None:
        self.worked: list[str] = []

    async def work(self, resource: delta.Resource[Item]) -> None:
        self.worked.append(resource.object.key)


def test_resource_expiry_and_synced_retention_together_are_rejected() -> None:
    with pytest.raises(delta.ConfigError, match="resource_expiry"):
        delta.NamespaceConfig(resource_expiry=60, synced_retention=60)
    # each alone is fine
    delta.NamespaceConfig(resource_expiry=60)
    delta.NamespaceConfig(synced_retention=60)


async def test_expired_synced_resources_are_worked_again(pg_dsn: str, schema: str) -> None:
    config = delta.Config(
        schema=schema,
        leader_ttl=1.0,
        maintenance_interval=0.2,
        poll_interval=0.2,
        synced_retention=60,
    )
    controller = Recorder()
    controllers = delta.Controllers()
    delta.add_controller(controllers, controller)
    namespaces = {
        "expiring": delta.NamespaceConfig(resource_expiry=EXPIRY),
        "default": delta.NamespaceConfig(),
    }
    async with delta.open_delta_client(
        pg_dsn, controllers, namespaces=namespaces, config=config
    ) as client:
        for key, ns in [
            ("exp-old", "expiring"),
            ("exp-new", "expiring"),
            ("exp-untouched", "expiring"),
            ("plain-old", "default"),
        ]:
            await client.inform(Item(key), delta.InformOpts(namespace=ns))

        def synced() -> int:
            return sql(pg_dsn, f"select count(*) from {schema}.resources where state = 'synced'")[
                0
            ][0]

        await wait_until(lambda: synced() == 4)
        assert sorted(controller.worked) == ["exp-new", "exp-old", "exp-untouched", "plain-old"]

        # synced longer ago than the expiry: exp-old, and plain-old (no expiry there)
        sql(
            pg_dsn,
            f"update {schema}.resources set synced_at = synced_at - "
            "make_interval(secs => %s) where object_id in ('exp-old', 'plain-old')",
            [EXPIRY + 100],
        )
        # updated long ago but synced recently: neither expired nor, with an
        # expiry set, cleaned past Config.synced_retention
        sql(
            pg_dsn,
            f"update {schema}.resources set updated_at = updated_at - "
            "interval '2 days' where object_id = 'exp-new'",
        )
        before = client.stats.maintenance.expired

        await wait_until(lambda: controller.worked.count("exp-old") == 2)
        await wait_until(lambda: synced() == 4)
        runs = client.stats.maintenance.runs
        await wait_until(lambda: client.stats.maintenance.runs >= runs + 3)
        row = await client.get_resource("item", "exp-old")
        stats = client.stats.maintenance

    assert Counter(controller.worked) == {
        "exp-old": 2,
        "exp-new": 1,
        "exp-untouched": 1,
        "plain-old": 1,
    }
    assert row is not None
    assert row.state is delta.ResourceState.SYNCED
    assert row.errors == ()
    assert stats.expired - before == 1
    states = dict(sql(pg_dsn, f"select object_id, state from {schema}.resources"))
    assert states == {
        "exp-old": "synced",
        "exp-new": "synced",
        "exp-untouched": "synced",
        "plain-old": "synced",
    }
