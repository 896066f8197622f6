"""A lone client becomes leader (``client.is_leader``, the leader table),
resigns when it stops, and counts what its maintenance did in
``client.stats.maintenance``: here the rescuer, which fails a lost worker's
``pending`` resources for a retry, degrades those out of attempts, and leaves
alone what is not yet overdue."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import trio

import trio_delta as delta

from .conftest import sql
from .helpers import wait_until

RESCUE = "rescued after worker loss"


@dataclass
class Item:
    kind: ClassVar[str] = "item"
    key: str

    def id(self) -> str:
        return self.key


class Recorder(delta.Controller[Item]):
    def __init__(self) -> None:
        self.worked: list[tuple[str, int]] = []

    async def work(self, resource: delta.Resource[Item]) -> None:
        self.worked.append((resource.object.key, resource.attempt))


def insert_pending(
    dsn: str, schema: str, key: str, *, attempt: int, max_attempts: int, age: float
) -> None:
    """A row a vanished worker ("ghost") claimed ``age`` seconds ago."""
    sql(
        dsn,
        f"""
        insert into {schema}.resources (kind, object_id, namespace, state, attempt,
            max_attempts, object, hash, created_at, updated_at, scheduled_at, attempted_at,
            attempted_by)
        values ('item', %(key)s::text, 'default', 'pending', %(attempt)s, %(max)s,
                jsonb_build_object('key', %(key)s::text), '\\x01',
                now() - make_interval(secs => %(age)s), now() - make_interval(secs => %(age)s),
                now() - make_interval(secs => %(age)s), now() - make_interval(secs => %(age)s),
                'ghost')
    """,
        {"key": key, "attempt": attempt, "max": max_attempts, "age": age},
    )


async def test_lone_client_is_leader_and_resigns_on_stop(pg_dsn: str, schema: str) -> None:
    config = delta.Config(
        schema=schema, leader_ttl=1.0, maintenance_interval=0.2, poll_interval=0.2
    )
    controllers = delta.Controllers()
    delta.add_controller(controllers, Recorder())
    async with delta.open_delta_client(pg_dsn, controllers, config=config) as client:
        await wait_until(lambda: client.is_leader, within=2)
        assert sql(pg_dsn, f"select leader_id from {schema}.leader") == [(client.id,)]
        runs = client.stats.maintenance.runs
        await wait_until(lambda: client.stats.maintenance.runs >= runs + 2, within=2)
        assert client.stats.maintenance.last_run_at is not None
        # still leader across several renewals
        await trio.sleep(1.2)
        assert client.is_leader
    assert not client.is_leader
    assert sql(pg_dsn, f"select leader_id from {schema}.leader") == []


async def test_rescuer_retries_or_degrades_lost_work_and_counts_it(
    pg_dsn: str, schema: str
) -> None:
    insert_pending(pg_dsn, schema, "lost-retry", attempt=1, max_attempts=3, age=120)
    insert_pending(pg_dsn, schema, "lost-last", attempt=1, max_attempts=1, age=120)
    insert_pending(pg_dsn, schema, "still-working", attempt=1, max_attempts=3, age=0)
    config = delta.Config(
        schema=schema,
        leader_ttl=1.0,
        maintenance_interval=0.2,
        poll_interval=0.2,
        work_timeout=30,
        rescue_after=30,
        retry_policy=lambda attempt: 0.05,
    )
    controller = Recorder()
    controllers = delta.Controllers()
    delta.add_controller(controllers, controller)
    async with delta.open_delta_client(pg_dsn, controllers, config=config) as client:

        def states() -> dict[str, str]:
            return dict(sql(pg_dsn, f"select object_id, state from {schema}.resources"))

        await wait_until(
            lambda: (
                states()
                == {"lost-retry": "synced", "lost-last": "degraded", "still-working": "pending"}
            ),
            within=5,
        )
        runs = client.stats.maintenance.runs
        await wait_until(lambda: client.stats.maintenance.runs >= runs + 2, within=2)
        stats = client.stats.maintenance
        retried = await client.get_resource("item", "lost-retry")
        degraded = await client.get_resource("item", "lost-last")
        untouched = await client.get_resource("item", "still-working")

    assert stats.rescued == 2
    assert controller.worked == [("lost-retry", 2)]
    assert retried is not None
    assert degraded is not None
    assert untouched is not None
    assert retried.attempt == 2
    assert retried.attempted_by == client.id
    assert [(e.attempt, e.error) for e in retried.errors] == [(1, RESCUE)]
    assert degraded.state is delta.ResourceState.DEGRADED
    assert degraded.attempt == 1
    assert degraded.attempted_by == "ghost"
    assert [(e.attempt, e.error) for e in degraded.errors] == [(1, RESCUE)]
    assert untouched.state is delta.ResourceState.PENDING
    assert untouched.errors == ()
