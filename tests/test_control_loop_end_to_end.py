"""An informed object is claimed, worked and synced on a real Postgres:
directly, behind PgBouncer in transaction mode, and polling only."""

from __future__ import annotations

import dataclasses

import pytest
import trio

import trio_delta as delta

from .models import RecordingController, User, controllers_for
from .pgbouncer import PgBouncer

#: How the client reaches the database: a name, and how to make its DSN and config.
CONNECTION_MODES = ["direct", "poll-only", "pooler-listen-direct", "pooler-poll-only"]


@pytest.fixture(params=CONNECTION_MODES)
def connection(
    request: pytest.FixtureRequest, pg_dsn: str, config: delta.Config
) -> tuple[str, delta.Config]:
    mode: str = request.param
    if mode == "direct":
        return pg_dsn, config
    if mode == "poll-only":
        return pg_dsn, dataclasses.replace(config, listen=False)
    # Through PgBouncer in transaction mode: with LISTEN on the server
    # itself, or with nothing reaching the server directly.
    bouncer: PgBouncer = request.getfixturevalue("pgbouncer")
    if mode == "pooler-listen-direct":
        pooled = dataclasses.replace(config, prepared_statements=False, listen_dsn=pg_dsn)
    else:
        pooled = dataclasses.replace(config, prepared_statements=False, listen=False)
    return bouncer.dsn, pooled


async def wait_for_state(
    client: delta.Client, kind: str, object_id: str, state: delta.ResourceState
) -> delta.ResourceRow[object]:
    with trio.fail_after(10):
        while True:
            row = await client.get_resource(kind, object_id)
            if row is not None and row.state is state:
                return row
            await trio.sleep(0.02)


async def test_informed_object_is_worked_and_synced(
    connection: tuple[str, delta.Config],
) -> None:
    dsn, config = connection
    controller = RecordingController()
    async with delta.open_delta_client(dsn, controllers_for(controller), config=config) as c:
        result = await c.inform(User("bob@hello.com", "Bob", 1))
        assert not result.already_exists
        # Scheduled, or claimed by the inform itself if the client was idle.
        assert (result.resource.state, result.resource.attempt) in {
            (delta.ResourceState.SCHEDULED, 0),
            (delta.ResourceState.PENDING, 1),
        }
        row = await wait_for_state(c, "user", "bob@hello.com", delta.ResourceState.SYNCED)
        assert row.object == User("bob@hello.com", "Bob", 1)
        assert row.attempt == 1
        assert row.attempted_by == c.id
        assert row.synced_at is not None
    assert controller.worked == [("bob@hello.com", 1)]


async def inform_then_fail(client: delta.Client, user: User) -> None:
    async with client.transaction() as tx:
        await client.inform_tx(tx, user)
        raise RuntimeError("roll back")


async def test_every_path_runs_many_times_over(connection: tuple[str, delta.Config]) -> None:
    """Each statement runs more often than psycopg's prepare threshold (5):
    on a transaction pooler, a prepared statement would be missing on the
    next server connection. Informs one by one, in bulk, in a transaction
    (committed and rolled back), with a stale check, and retried work."""
    dsn, config = connection
    controller = RecordingController()
    controller.fail = {f"u{i}@x": 1 for i in range(0, 30, 3)}
    async with delta.open_delta_client(dsn, controllers_for(controller), config=config) as c:
        for i in range(30):
            await c.inform(User(f"u{i}@x", "one", 1))
            await c.inform(User(f"u{i}@x", "older", 0))  # the stale check keeps "one"
        await c.inform_many([User(f"m{i}@x", "bulk", 1) for i in range(200)])
        for i in range(8):
            async with c.transaction() as tx:
                await c.inform_tx(tx, User(f"t{i}@x", "tx", 1))
            with pytest.raises(RuntimeError):
                await inform_then_fail(c, User(f"rolled-back{i}@x", "tx", 1))
        with trio.fail_after(30):
            while len(await c.list_resources(state=delta.ResourceState.SYNCED)) < 238:
                await trio.sleep(0.05)
        assert await c.get_resource("user", "rolled-back0@x") is None
        row = await c.get_resource("user", "u3@x")
        assert row is not None
        assert row.object == User("u3@x", "one", 1)
        assert row.attempt == 2  # failed once, retried
    expected = [f"u{i}@x" for i in range(30)] + [f"m{i}@x" for i in range(200)]
    expected += [f"t{i}@x" for i in range(8)]
    assert sorted(w for w, attempt in controller.worked if attempt == 1) == sorted(expected)
