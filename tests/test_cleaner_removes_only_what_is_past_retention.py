"""The leader's cleaner deletes synced, degraded and deleted resources whose
``updated_at`` is past their namespace's retention (falling back to
``Config``'s), and nothing else: not fresher rows, not the same age in a
namespace with a longer retention, never failed rows. Ages are arranged by
backdating ``updated_at`` instead of waiting."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import ClassVar

import trio_delta as delta

from .conftest import sql
from .helpers import wait_until

HOUR = 3600.0
BULK = 4500  # more than one cleaner statement deletes (a few thousand at most)


@dataclass
class Item:
    kind: ClassVar[str] = "item"
    key: str
    outcome: str  # "sync" | "fail" | "delete"

    def id(self) -> str:
        return self.key


class ItemController(delta.Controller[Item]):
    async def work(self, resource: delta.Resource[Item]) -> None:
        if resource.object.outcome == "fail":
            raise RuntimeError("always fails")
        if resource.object.outcome == "delete":
            raise delta.ResourceDelete("gone")


NAMESPACES = {
    "short": delta.NamespaceConfig(
        synced_retention=60, degraded_retention=60, deleted_retention=60
    ),
    # degraded and deleted retention come from Config: 600 s and 1 day
    "long": delta.NamespaceConfig(synced_retention=HOUR),
}
AGES = {"fresh": 0, "aged": 120, "old": 2 * HOUR}
STATES = {"synced": "sync", "degraded": "fail", "deleted": "delete"}


def remaining(dsn: str, schema: str) -> set[str]:
    return {r[0] for r in sql(dsn, f"select object_id from {schema}.resources where kind = 'item'")}


async def test_cleaner_removes_only_what_is_past_retention_per_namespace(
    pg_dsn: str, schema: str
) -> None:
    config = delta.Config(
        schema=schema,
        leader_ttl=1.0,
        maintenance_interval=0.2,
        poll_interval=0.2,
        degraded_retention=600,
        deleted_retention=24 * HOUR,
        retry_policy=lambda attempt: HOUR,  # a failed row stays failed
    )
    controllers = delta.Controllers()
    delta.add_controller(controllers, ItemController())
    keys: set[str] = set()
    async with delta.open_delta_client(
        pg_dsn, controllers, namespaces=NAMESPACES, config=config
    ) as client:
        for ns in NAMESPACES:
            for state, outcome in STATES.items():
                for age in AGES:
                    key = f"{ns}-{state}-{age}"
                    keys.add(key)
                    await client.inform(
                        Item(key, outcome), delta.InformOpts(namespace=ns, max_attempts=1)
                    )
            key = f"{ns}-failed-old"
            keys.add(key)
            await client.inform(Item(key, "fail"), delta.InformOpts(namespace=ns, max_attempts=5))

        def settled() -> bool:
            counts = dict(
                sql(pg_dsn, f"select state, count(*) from {schema}.resources group by state")
            )
            return counts == {"synced": 6, "degraded": 6, "deleted": 6, "failed": 2}

        await wait_until(settled)
        assert remaining(pg_dsn, schema) == keys  # nothing cleaned yet: all are fresh

        for age, seconds in AGES.items():
            sql(
                pg_dsn,
                f"update {schema}.resources set updated_at = updated_at - "
                "make_interval(secs => %s) where object_id like %s",
                [seconds, f"%-{age}"],
            )
        # failed rows are never cleaned, however old
        sql(
            pg_dsn,
            f"update {schema}.resources set updated_at = updated_at - interval "
            "'30 days' where state = 'failed'",
        )
        # many old synced rows of another kind in "short": cleaned in several statements
        sql(
            pg_dsn,
            f"""
            insert into {schema}.resources (kind, object_id, namespace, state, attempt,
                max_attempts, object, hash, created_at, updated_at, scheduled_at, synced_at)
            select 'bulk', 'bulk-' || i, 'short', 'synced', 1, 1, '{{}}', '\\x00',
                   now() - interval '1 day', now() - interval '1 day',
                   now() - interval '1 day', now() - interval '1 day'
            from generate_series(1, %s) as i
        """,
            [BULK],
        )

        expected_gone = {
            "short-synced-aged",
            "short-synced-old",
            "short-degraded-aged",
            "short-degraded-old",
            "short-deleted-aged",
            "short-deleted-old",
            "long-synced-old",  # past 1 h
            "long-degraded-old",  # past Config's 600 s
        }

        def bulk_left() -> int:
            return sql(pg_dsn, f"select count(*) from {schema}.resources where kind = 'bulk'")[0][0]

        await wait_until(
            lambda: remaining(pg_dsn, schema) == keys - expected_gone and bulk_left() == 0
        )
        # a few more maintenance runs change nothing
        runs = client.stats.maintenance.runs
        await wait_until(lambda: client.stats.maintenance.runs >= runs + 3)
        assert remaining(pg_dsn, schema) == keys - expected_gone
        cleaned = client.stats.maintenance.cleaned

    assert cleaned == Counter(
        {
            "short/synced": 2 + BULK,
            "short/degraded": 2,
            "short/deleted": 2,
            "long/synced": 1,
            "long/degraded": 1,
        }
    )
    assert sql(
        pg_dsn,
        f"select object_id, state from {schema}.resources "
        "where object_id like '%failed%' order by 1",
    ) == [("long-failed-old", "failed"), ("short-failed-old", "failed")]
