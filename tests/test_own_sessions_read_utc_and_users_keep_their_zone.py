"""trio_delta's own sessions read times in UTC (psycopg's fast path: a
named zone costs a zoneinfo conversion per value), while a user's statements
in ``client.transaction()`` still run in the database's zone."""

from __future__ import annotations

from datetime import UTC

import trio_delta as delta

from .models import RecordingController, User, controllers_for, wait_for_state

S = delta.ResourceState


class ZoneRecorder(RecordingController):
    def __init__(self) -> None:
        super().__init__()
        self.claimed: list[delta.Resource[User]] = []

    async def work(self, resource: delta.Resource[User]) -> None:
        self.claimed.append(resource)
        await super().work(resource)


def in_berlin(dsn: str) -> str:
    """``dsn`` whose sessions start in a zone that is neither UTC nor
    equivalent to it in psycopg's eyes."""
    return f"{dsn} options='-c TimeZone=Europe/Berlin'"


async def test_worked_rows_carry_utc_and_user_sql_the_databases_zone(
    pg_dsn: str, config: delta.Config
) -> None:
    controller = ZoneRecorder()
    dsn = in_berlin(pg_dsn)
    async with delta.open_delta_client(dsn, controllers_for(controller), config=config) as c:
        result = await c.inform(User("tz@x.io", "Tz", 1))
        assert result.resource.scheduled_at.tzinfo is UTC
        row = await wait_for_state(c, "user", "tz@x.io", S.SYNCED, within=5)
        # Read back through the pool, and claimed through a lane.
        assert row.synced_at is not None
        assert row.synced_at.tzinfo is UTC
        assert row.created_at.tzinfo is UTC
        (claimed,) = controller.claimed
        assert claimed.attempted_at is not None
        assert claimed.attempted_at.tzinfo is UTC
        assert claimed.scheduled_at.tzinfo is UTC
        async with c.transaction() as tx:
            assert await tx.execute("show timezone") == [("Europe/Berlin",)]
            (at,) = (await tx.execute("select now()"))[0]
            assert str(at.tzinfo) == "Europe/Berlin"
            # and the pool's own sessions are back to UTC after it
        async with c.transaction() as tx:
            assert await tx.execute("show timezone") == [("Europe/Berlin",)]
        again = await c.get_resource("user", "tz@x.io")
        assert again is not None
        assert again.updated_at.tzinfo is UTC
        assert again.updated_at == row.updated_at
