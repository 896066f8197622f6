"""``inform_tx`` joins the user's transaction: the user's rows and the
resource are committed together, or rolled back together."""

from __future__ import annotations

import pytest
import trio

import trio_delta as delta

from .conftest import sql
from .models import RecordingController, User, controllers_for, wait_for_state

S = delta.ResourceState


class Boom(Exception):
    pass


@pytest.fixture
def app_table(pg_dsn: str, schema: str) -> str:
    table = f"{schema}.app_user"
    sql(pg_dsn, f"create table {table} (email text primary key)")
    return table


async def test_commit_writes_user_rows_and_resource_together(
    pg_dsn: str, schema: str, config: delta.Config, app_table: str
) -> None:
    controller = RecordingController()
    async with delta.open_delta_client(pg_dsn, controllers_for(controller), config=config) as c:
        async with c.transaction() as tx:
            await tx.execute(f"insert into {app_table} (email) values (%s)", ["tx@x.io"])
            rows = await tx.execute(f"select email from {app_table}")
            assert rows == [("tx@x.io",)]
            result = await c.inform_tx(tx, User("tx@x.io", "Tx", 1))
            assert result.changed
            assert result.resource.state is S.SCHEDULED
            # not visible outside the transaction, so nobody can work it yet
            assert await c.get_resource("user", "tx@x.io") is None
            assert sql(pg_dsn, f"select count(*) from {schema}.resources") == [(0,)]
            assert sql(pg_dsn, f"select count(*) from {app_table}") == [(0,)]
            await trio.sleep(0.3)
            assert controller.worked == []
        assert sql(pg_dsn, f"select email from {app_table}") == [("tx@x.io",)]
        row = await wait_for_state(c, "user", "tx@x.io", S.SYNCED, within=5)
    assert row.object == User("tx@x.io", "Tx", 1)
    assert controller.worked == [("tx@x.io", 1)]


async def test_exception_rolls_back_user_rows_and_resource(
    pg_dsn: str, schema: str, config: delta.Config, app_table: str
) -> None:
    controller = RecordingController()
    async with delta.open_delta_client(pg_dsn, controllers_for(controller), config=config) as c:

        async def insert_inform_then_raise() -> None:
            async with c.transaction() as tx:
                await tx.execute(f"insert into {app_table} (email) values (%s)", ["rb@x.io"])
                await c.inform_tx(tx, User("rb@x.io", "Rb", 1))
                await c.inform_tx(tx, User("rb2@x.io", "Rb2", 1))
                raise Boom

        with pytest.raises(Boom):
            await insert_inform_then_raise()
        assert await c.get_resource("user", "rb@x.io") is None
        assert await c.list_resources() == []
        assert sql(pg_dsn, f"select count(*) from {schema}.resources") == [(0,)]
        assert sql(pg_dsn, f"select count(*) from {app_table}") == [(0,)]
        await trio.sleep(0.5)
        assert controller.worked == []

        # the client is unharmed and informs as usual afterwards
        await c.inform(User("after@x.io", "After"))
        await wait_for_state(c, "user", "after@x.io", S.SYNCED, within=5)
    assert controller.worked == [("after@x.io", 1)]


async def test_failing_user_statement_rolls_back_the_inform(
    pg_dsn: str, schema: str, config: delta.Config, app_table: str
) -> None:
    sql(pg_dsn, f"insert into {app_table} (email) values ('dup@x.io')")
    controller = RecordingController()
    async with delta.open_delta_client(pg_dsn, controllers_for(controller), config=config) as c:

        async def inform_then_violate_primary_key() -> None:
            async with c.transaction() as tx:
                await c.inform_tx(tx, User("dup@x.io", "Dup", 1))
                await tx.execute(f"insert into {app_table} (email) values (%s)", ["dup@x.io"])

        with pytest.raises(delta.DeltaError):
            await inform_then_violate_primary_key()
        assert await c.get_resource("user", "dup@x.io") is None
    assert sql(pg_dsn, f"select count(*) from {schema}.resources") == [(0,)]


async def test_transaction_cannot_be_used_after_it_ended(
    pg_dsn: str, config: delta.Config, app_table: str
) -> None:
    controller = RecordingController()
    async with delta.open_delta_client(pg_dsn, controllers_for(controller), config=config) as c:
        async with c.transaction() as tx:
            await tx.execute("select 1")
        with pytest.raises(delta.ClientClosedError):
            await c.inform_tx(tx, User("late@x.io", "Late"))
        with pytest.raises(delta.ClientClosedError):
            await tx.execute("select 1")
        assert await c.get_resource("user", "late@x.io") is None
