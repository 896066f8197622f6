"""``open_delta_client`` returns, or raises one clear error, within a bounded
time: on a database that takes no writes, and while another transaction
holds the controllers row the informers register through."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import ClassVar

import psycopg
import pytest
import trio
from psycopg import sql as pgsql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

import trio_delta as delta
from tests.conftest import sql
from tests.helpers import wait_until_async


@dataclass
class Thing:
    kind: ClassVar[str] = "startup-thing"
    name: str

    def id(self) -> str:
        return self.name


class ThingController(delta.Controller[Thing]):
    def __init__(self) -> None:
        self.worked: list[str] = []

    async def work(self, resource: delta.Resource[Thing]) -> None:
        self.worked.append(resource.object.name)


def controllers() -> tuple[delta.Controllers, ThingController]:
    ctl = ThingController()
    cs = delta.Controllers()
    delta.add_controller(cs, ctl)
    return cs, ctl


@pytest.fixture
def read_only_dsn(pg_dsn: str) -> Iterator[str]:
    """A database of this test's own, migrated, then read-only by default."""
    name = f"ro_{uuid.uuid4().hex[:12]}"
    sql(pg_dsn, pgsql.SQL("create database {}").format(pgsql.Identifier(name)))
    dsn = make_conninfo(pg_dsn, dbname=name)
    try:
        trio.run(lambda: delta.migrate(dsn, schema="delta"))
        sql(
            dsn,
            pgsql.SQL("alter database {} set default_transaction_read_only = on").format(
                pgsql.Identifier(name)
            ),
        )
        yield dsn
    finally:
        sql(pg_dsn, pgsql.SQL("drop database {} with (force)").format(pgsql.Identifier(name)))


async def test_a_read_only_database_is_one_clear_error_at_once(read_only_dsn: str) -> None:
    cs, _ = controllers()
    started = time.monotonic()
    with trio.fail_after(10), pytest.raises(delta.StoreError) as caught:
        async with delta.open_delta_client(read_only_dsn, cs):
            pytest.fail("the client started on a read-only database")
    assert time.monotonic() - started < 10
    message = str(caught.value)
    assert "read-only" in message
    assert "default_transaction_read_only" in message
    assert conninfo_to_dict(read_only_dsn)["dbname"] in message


async def test_a_locked_controllers_row_does_not_hold_up_start(
    pg_dsn: str, config: delta.Config
) -> None:
    cs, ctl = controllers()
    async with delta.open_delta_client(pg_dsn, cs, config=config) as first:
        # registers the kind's controllers row, and runs its informer once
        await wait_until_async(lambda: _informed_after(first, None))
        before = await first.get_informer(Thing.kind)
        assert before is not None
    with psycopg.connect(pg_dsn) as holder:
        holder.execute(
            pgsql.SQL("select * from {}.controllers for update").format(
                pgsql.Identifier(config.schema)
            )
        )
        started = time.monotonic()
        with trio.fail_after(5):
            async with delta.open_delta_client(pg_dsn, cs, config=config) as client:
                took = time.monotonic() - started
                # Work goes on while the informers wait for the row.
                await client.inform(Thing("a"))
                await wait_until_async(lambda: _synced(client, "a"))
                holder.rollback()  # the informers may register now
                await client.schedule_inform(Thing.kind)
                await wait_until_async(lambda: _informed_after(client, before.last_run_at))
    assert took < 2
    assert ctl.worked == ["a"]


async def _synced(client: delta.Client, name: str) -> bool:
    row = await client.get_resource(Thing.kind, name)
    return row is not None and row.state is delta.ResourceState.SYNCED


async def _informed_after(client: delta.Client, after: datetime | None) -> bool:
    state = await client.get_informer(Thing.kind)
    return (
        state is not None
        and state.last_run_at is not None
        and (after is None or state.last_run_at > after)
    )
