"""An informed object is claimed, worked and synced on a real Postgres."""

from __future__ import annotations

import trio

import trio_delta as delta

from .models import RecordingController, User, controllers_for


async def wait_for_state(
    client: delta.Client, kind: str, object_id: str, state: delta.ResourceState
) -> delta.ResourceRow[object]:
    with trio.fail_after(10):
        while True:
            row = await client.get_resource(kind, object_id)
            if row is not None and row.state is state:
                return row
            await trio.sleep(0.02)


async def test_informed_object_is_worked_and_synced(pg_dsn: str, config: delta.Config) -> None:
    controller = RecordingController()
    async with delta.open_delta_client(pg_dsn, controllers_for(controller), config=config) as c:
        result = await c.inform(User("bob@hello.com", "Bob", 1))
        assert not result.already_exists
        assert result.resource.state is delta.ResourceState.SCHEDULED
        row = await wait_for_state(c, "user", "bob@hello.com", delta.ResourceState.SYNCED)
        assert row.object == User("bob@hello.com", "Bob", 1)
        assert row.attempt == 1
        assert row.attempted_by == c.id
        assert row.synced_at is not None
    assert controller.worked == [("bob@hello.com", 1)]
