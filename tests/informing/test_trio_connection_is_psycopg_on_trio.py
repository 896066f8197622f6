"""``trio_delta.connect`` gives a Trio program psycopg itself: tasks may share
the connection, a cancelled statement is cancelled on the server and leaves
the connection usable, and the block commits or rolls back like psycopg's."""

from __future__ import annotations

import time

import psycopg
import pytest
import trio
from psycopg.rows import dict_row

import trio_delta as delta

from ..conftest import sql


async def test_tasks_share_one_connection_one_statement_at_a_time(pg_dsn: str) -> None:
    async with delta.connect(pg_dsn, autocommit=True) as conn:
        pids: list[int] = []

        async def query(i: int) -> None:
            cur = await conn.execute("select pg_backend_pid(), pg_sleep(0.02), %s::int", [i])
            row = await cur.fetchone()
            assert row is not None
            assert row[2] == i
            pids.append(row[0])

        started = time.perf_counter()
        async with trio.open_nursery() as nursery:
            for i in range(5):
                nursery.start_soon(query, i)
        # One backend, statements in turn: five sleeps one after another.
        assert len(set(pids)) == 1
        assert len(pids) == 5
        assert time.perf_counter() - started >= 0.1


async def test_a_cancelled_statement_stops_on_the_server(pg_dsn: str) -> None:
    async with delta.connect(pg_dsn, autocommit=True) as conn:
        with trio.move_on_after(0.2) as scope:
            await conn.execute("select pg_sleep(30)")
        assert scope.cancelled_caught
        # The backend is free again at once, and the connection works.
        with trio.fail_after(5):
            cur = await conn.execute("select 1")
            assert await cur.fetchone() == (1,)


async def test_the_block_commits_or_rolls_back(pg_dsn: str, schema: str) -> None:
    table = f"{schema}.kept"
    sql(pg_dsn, f"create table {table} (v int)")
    async with delta.connect(pg_dsn) as conn:
        await conn.execute(f"insert into {table} values (1)")

    async def fail_after_insert() -> None:
        async with delta.connect(pg_dsn) as conn:
            await conn.execute(f"insert into {table} values (2)")
            raise ZeroDivisionError

    with pytest.raises(ZeroDivisionError):
        await fail_after_insert()
    with trio.move_on_after(0.3):
        async with delta.connect(pg_dsn) as conn:
            await conn.execute(f"insert into {table} values (3)")
            await trio.sleep_forever()
    assert sql(pg_dsn, f"select v from {table}") == [(1,)]


async def test_psycopg_options_are_passed_on(pg_dsn: str) -> None:
    async with delta.connect(pg_dsn, row_factory=dict_row, application_name="td-app") as conn:
        cur = await conn.execute("select current_setting('application_name') as name")
        assert await cur.fetchone() == {"name": "td-app"}
        assert isinstance(conn, psycopg.AsyncConnection)
    with pytest.raises(delta.ConfigError, match="invalid connection"):
        async with delta.connect(pg_dsn, no_such_option=1):
            pass
    with pytest.raises(psycopg.OperationalError):
        async with delta.connect("host=127.0.0.1 port=1 user=postgres connect_timeout=2"):
            pass


async def test_inform_on_an_autocommit_connection_is_its_own_transaction(
    pg_dsn: str, schema: str, config: delta.Config
) -> None:
    from ..models import Note, NoteController, controllers_for

    async with (
        delta.open_delta_client(pg_dsn, controllers_for(NoteController()), config=config) as c,
        delta.connect(pg_dsn, autocommit=True) as conn,
    ):
        result = await c.inform_tx(conn, Note("n1"))
        assert result.changed
        # Committed already: visible to everyone, nothing left open.
        assert sql(pg_dsn, f"select object_id from {schema}.resources") == [("n1",)]
        assert conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
