"""``inform_many`` (client, producer, test client) writes a whole batch in one
transaction: results in input order, a repeated object written once as its
last version, one invalid object refusing all with its position."""

from __future__ import annotations

import psycopg
import pytest

import trio_delta as delta
from trio_delta import producer
from trio_delta._store.postgres.statements import UPSERT_CHUNK
from trio_delta.testing import open_test_client

from ..conftest import sql
from ..models import Note, NoteController, controllers_for


async def test_results_come_in_input_order_and_repeats_collapse(
    pg_dsn: str, schema: str, config: delta.Config
) -> None:
    notes = NoteController()
    async with delta.open_delta_client(pg_dsn, controllers_for(notes), config=config) as c:
        await c.inform(Note("b", "old"))
        batch = [Note("c", "1"), Note("b", "new"), Note("a", "2"), Note("c", "last")]
        results = await c.inform_many(batch)
        assert [r.resource.object_id for r in results] == ["c", "b", "a", "c"]
        assert [r.already_exists for r in results] == [False, True, False, False]
        # The repeated "c" is written once, as its last version, for both.
        assert results[0].resource is results[3].resource
        assert results[0].resource.object == Note("c", "last")
        assert await c.inform_many([]) == []
    assert sql(pg_dsn, f"select object_id, object->>'text' from {schema}.resources order by 1") == [
        ("a", "2"),
        ("b", "new"),
        ("c", "last"),
    ]


async def test_one_invalid_object_refuses_the_batch(
    pg_dsn: str, schema: str, config: delta.Config
) -> None:
    async with delta.open_delta_client(
        pg_dsn, controllers_for(NoteController()), config=config
    ) as c:
        with pytest.raises(delta.ObjectError, match=r"^object 2: note: id must be") as info:
            await c.inform_many([Note("a"), Note("b"), Note(""), Note("d")])
        assert info.value.index == 2
        with pytest.raises(delta.ObjectError, match="objects must be an iterable"):
            await c.inform_many(Note("a"))  # pyright: ignore[reportArgumentType]
    with psycopg.connect(pg_dsn) as conn:
        with pytest.raises(delta.ObjectError) as info:
            producer.inform_many(conn, [Note("a"), 7], schema=schema)
        assert info.value.index == 1
        # Refused before anything was sent: the transaction is still usable.
        assert conn.execute("select 1").fetchone() == (1,)
    assert sql(pg_dsn, f"select count(*) from {schema}.resources") == [(0,)]


async def test_a_batch_larger_than_one_statement_is_one_transaction(
    pg_dsn: str, schema: str
) -> None:
    count = UPSERT_CHUNK * 2 + 17
    objs = [Note(f"n{i}", str(i)) for i in range(count)]
    with psycopg.connect(pg_dsn) as conn:
        results = producer.inform_many(conn, objs, schema=schema)
        assert [r.resource.object_id for r in results] == [o.key for o in objs]
        # Nothing is visible before the commit, though three statements ran.
        assert sql(pg_dsn, f"select count(*) from {schema}.resources") == [(0,)]
    assert sql(pg_dsn, f"select count(*) from {schema}.resources") == [(count,)]


async def test_a_client_batch_of_several_statements_commits_once_in_order(
    pg_dsn: str, schema: str, config: delta.Config
) -> None:
    # Several statements on the client's own connection, each sent before
    # the rows of the last are read: every result in input order, written once.
    count = UPSERT_CHUNK * 2 + 17
    objs = [Note(f"n{i}", str(i)) for i in range(count)]
    async with delta.open_delta_client(
        pg_dsn, controllers_for(NoteController()), config=config
    ) as c:
        await c.inform(Note(f"n{count - 1}", "before"))  # the last chunk's one update
        results = await c.inform_many(objs)
        assert [r.resource.object_id for r in results] == [o.key for o in objs]
        assert [r.resource.object for r in results] == objs
        assert [r.already_exists for r in results] == [False] * (count - 1) + [True]
        assert all(r.changed for r in results)
    assert sql(pg_dsn, f"select count(*), count(distinct object_id) from {schema}.resources") == [
        (count, count)
    ]


async def test_a_batch_of_several_statements_in_a_transaction_rolls_back_whole(
    pg_dsn: str, schema: str, config: delta.Config
) -> None:
    count = UPSERT_CHUNK * 2 + 17
    async with delta.open_delta_client(
        pg_dsn, controllers_for(NoteController()), config=config
    ) as c:
        written: list[int] = []

        async def inform_then_fail() -> None:
            async with c.transaction() as tx:
                results = await c.inform_many_tx(tx, [Note(f"n{i}") for i in range(count)])
                written.append(len(results))
                raise RuntimeError("changed my mind")

        with pytest.raises(RuntimeError, match="changed my mind"):
            await inform_then_fail()
        assert written == [count]
    assert sql(pg_dsn, f"select count(*) from {schema}.resources") == [(0,)]


async def test_the_memory_store_informs_many_and_refuses_sql_connections(pg_dsn: str) -> None:
    notes = NoteController()
    async with open_test_client(controllers_for(notes)) as t:
        results = await t.client.inform_many([Note("x"), Note("y")])
        assert [r.changed for r in results] == [True, True]
        await t.run_until_idle()
        assert sorted(notes.worked) == ["x", "y"]
        async with delta.connect(pg_dsn) as conn:
            with pytest.raises(delta.ConfigError, match="memory store has no SQL"):
                await t.client.inform_tx(conn, Note("z"))
