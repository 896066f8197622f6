"""``raise ResourceDelete`` from work soft-deletes the resource."""

from __future__ import annotations

import trio

import trio_delta as delta

from .conftest import sql
from .models import RecordingController, User, controllers_for, wait_for_state

S = delta.ResourceState


async def test_resource_delete_moves_resource_to_deleted(
    pg_dsn: str, schema: str, config: delta.Config
) -> None:
    controller = RecordingController()
    controller.delete.add("gone@x.io")
    async with delta.open_delta_client(pg_dsn, controllers_for(controller), config=config) as c:
        await c.inform(User("gone@x.io", "Gone"))
        await c.inform(User("kept@x.io", "Kept"))
        deleted = await wait_for_state(c, "user", "gone@x.io", S.DELETED)
        kept = await wait_for_state(c, "user", "kept@x.io", S.SYNCED)
        assert deleted.attempt == 1
        assert deleted.errors == ()  # a delete is not a failure
        assert deleted.attempted_by == c.id
        assert kept.state is S.SYNCED
        # deleted is final: not worked again
        await trio.sleep(0.6)
        assert [e for e, _ in controller.worked].count("gone@x.io") == 1
        listed = await c.list_resources(state=S.DELETED)
        assert [r.object_id for r in listed] == ["gone@x.io"]
    # a soft delete keeps the row until the cleaner removes it after retention
    assert sql(pg_dsn, f"select state from {schema}.resources where object_id = 'gone@x.io'") == [
        ("deleted",)
    ]
