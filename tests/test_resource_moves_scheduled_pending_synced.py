"""A resource goes scheduled -> pending (while worked) -> synced, and the
client that worked it is recorded in ``attempted_by``; informed while its
client is idle, it is pending when the inform returns (claimed by the
inform's own statement) and worked once."""

from __future__ import annotations

import dataclasses

import trio

import trio_delta as delta

from .conftest import sql
from .models import RecordingController, User, controllers_for, wait_for_state, wait_until

S = delta.ResourceState


async def test_informed_resource_is_scheduled_then_pending_then_synced(
    pg_dsn: str, schema: str, config: delta.Config
) -> None:
    controller = RecordingController()
    controller.block = trio.Event()
    config = dataclasses.replace(config, claim_on_inform=False)
    async with delta.open_delta_client(pg_dsn, controllers_for(controller), config=config) as c:
        result = await c.inform(User("ann@x.io", "Ann", 1))
        assert result.changed
        assert not result.already_exists
        row = result.resource
        assert row.state is S.SCHEDULED
        assert row.attempt == 0
        assert row.kind == "user"
        assert row.object_id == "ann@x.io"
        assert row.namespace == "default"
        assert row.object == User("ann@x.io", "Ann", 1)
        assert row.errors == ()
        assert row.attempted_by is None
        assert row.attempted_at is None
        assert row.synced_at is None

        with trio.fail_after(5):
            await controller.started.wait()
        pending = await c.get_resource("user", "ann@x.io")
        assert pending is not None
        assert pending.state is S.PENDING
        assert pending.attempt == 1
        assert pending.attempted_by == c.id
        assert pending.attempted_at is not None
        assert pending.attempted_at >= pending.scheduled_at
        assert pending.synced_at is None
        assert sql(pg_dsn, f"select state, attempt from {schema}.resources") == [("pending", 1)]

        controller.block.set()
        synced = await wait_for_state(c, "user", "ann@x.io", S.SYNCED)
        assert synced.attempt == 1
        assert synced.attempted_by == c.id
        assert synced.synced_at is not None
        assert synced.attempted_at is not None
        assert synced.synced_at >= synced.attempted_at
        assert synced.errors == ()
        assert synced.id == row.id
    assert controller.worked == [("ann@x.io", 1)]
    assert sql(pg_dsn, f"select state, attempt from {schema}.resources") == [("synced", 1)]


async def test_an_idle_clients_inform_is_pending_when_it_returns_and_worked_once(
    pg_dsn: str, schema: str, config: delta.Config
) -> None:
    controller = RecordingController()
    controller.block = trio.Event()
    # No poll: a claim of the fetcher's in flight would make the client busy.
    config = dataclasses.replace(config, poll_interval=60.0)
    async with delta.open_delta_client(pg_dsn, controllers_for(controller), config=config) as c:
        fetcher = c._engine.fetcher  # pyright: ignore[reportPrivateUsage]

        async def claims_over() -> bool:
            # Start-up claims done and none about to start: the client is idle.
            return (
                (await c.health()).last_claim is not None
                and not fetcher._fetching  # pyright: ignore[reportPrivateUsage]
                and not any(w.is_set() for w in fetcher._wakes)  # pyright: ignore[reportPrivateUsage]
            )

        await wait_until(claims_over)
        result = await c.inform(User("bo@x.io", "Bo", 1))
        row = result.resource
        assert (row.state, row.attempt, row.attempted_by) == (S.PENDING, 1, c.id)
        assert row.attempted_at == row.scheduled_at == row.updated_at
        assert row.object == User("bo@x.io", "Bo", 1)
        assert sql(pg_dsn, f"select state, attempt, attempted_by from {schema}.resources") == [
            ("pending", 1, c.id)
        ]
        with trio.fail_after(5):
            await controller.started.wait()
        # Informed again while its work runs: kept pending for that work,
        # whose outcome then finds the object changed and schedules it.
        again = await c.inform(User("bo@x.io", "Bo", 2))
        assert (again.resource.state, again.resource.attempt) == (S.PENDING, 1)
        controller.block.set()
        synced = await wait_for_state(c, "user", "bo@x.io", S.SYNCED)
        assert synced.object == User("bo@x.io", "Bo", 2)
    assert [e for e, _ in controller.worked] == ["bo@x.io", "bo@x.io"]
    assert [a for _, a in controller.worked] == [1, 1]


async def test_client_ids_are_unique_and_recorded_in_attempted_by(
    pg_dsn: str, schema: str, config: delta.Config
) -> None:
    first, second = RecordingController(), RecordingController()
    async with (
        delta.open_delta_client(pg_dsn, controllers_for(first), config=config) as a,
        delta.open_delta_client(pg_dsn, controllers_for(second), config=config) as b,
    ):
        assert isinstance(a.id, str)
        assert a.id
        assert a.id != b.id
        for i in range(20):
            await a.inform(User(f"u{i}@x.io", "U"))

        async def all_synced() -> bool:
            return len(await a.list_resources(state=S.SYNCED)) == 20

        await wait_until(all_synced)
        rows = await b.list_resources(kind="user")
    by_client = {a.id: {e for e, _ in first.worked}, b.id: {e for e, _ in second.worked}}
    for row in rows:
        assert row.attempted_by in by_client
        assert row.object_id in by_client[row.attempted_by]


async def test_configured_client_id_is_used(pg_dsn: str, schema: str) -> None:
    config = delta.Config(schema=schema, poll_interval=0.2, client_id="worker-7")
    controller = RecordingController()
    async with delta.open_delta_client(pg_dsn, controllers_for(controller), config=config) as c:
        assert c.id == "worker-7"
        await c.inform(User("cid@x.io", "C"))
        row = await wait_for_state(c, "user", "cid@x.io", S.SYNCED)
    assert row.attempted_by == "worker-7"
