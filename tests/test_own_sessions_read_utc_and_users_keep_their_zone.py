"""trio_delta's own sessions read times in UTC (psycopg's fast path: a
named zone costs a zoneinfo conversion per value), while a user's statements
in ``client.transaction()`` still run in the database's zone."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import trio_delta as delta
from trio_delta._store.params import InformLease, InformRunEnd
from trio_delta._store.postgres import open_postgres_store

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


async def test_a_naive_informer_cursor_is_a_time_in_the_databases_zone(
    pg_dsn: str, schema: str
) -> None:
    """An object's ``created_at()`` may be naive; the cursor it becomes is a
    time in the database's zone, as a session that set no zone reads it,
    and not one in the UTC trio_delta's sessions run in."""
    t0 = datetime(2030, 6, 1, 9, 0, tzinfo=UTC)
    async with open_postgres_store(in_berlin(pg_dsn), schema=schema, pool_size=2) as store:
        control = store.control
        for cursor, expected in (
            (datetime(2030, 6, 1, 12, 0), datetime(2030, 6, 1, 10, 0, tzinfo=UTC)),
            (datetime(2030, 6, 1, 13, 0, tzinfo=UTC), datetime(2030, 6, 1, 13, 0, tzinfo=UTC)),
        ):
            await control.ensure_controllers({"item": t0}, now=t0)
            lease = await control.claim_inform(
                InformLease("item", "c1", t0, t0 + timedelta(minutes=1))
            )
            assert lease is not None
            await control.finish_inform(
                InformRunEnd("item", "c1", t0, cursor, True, t0, None, None)
            )
            ctl = await control.get_controller("item")
            assert ctl is not None
            assert ctl.cursor == expected
            assert ctl.cursor is not None
            assert ctl.cursor.tzinfo is UTC
