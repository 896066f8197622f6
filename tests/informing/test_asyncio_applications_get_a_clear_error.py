"""Under asyncio, the producer works, and what runs only on Trio says so
(``TrioRequiredError``) instead of failing with "Task got bad yield"."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import psycopg
import pytest
import trio

import trio_delta as delta
from trio_delta import producer
from trio_delta.testing import open_test_client

from ..conftest import sql
from ..models import Note, NoteController, controllers_for


def _entry_points(dsn: str) -> dict[str, Callable[[], Awaitable[Any]]]:
    async def client() -> None:
        async with delta.open_delta_client(dsn, controllers_for(NoteController())):
            pass

    async def test_client() -> None:
        async with open_test_client(controllers_for(NoteController())):
            pass

    async def connect() -> None:
        async with delta.connect(dsn):
            pass

    return {
        "open_delta_client": client,
        "migrate": lambda: delta.migrate(dsn),
        "connect": connect,
        "open_test_client": test_client,
    }


@pytest.mark.parametrize("name", ["open_delta_client", "migrate", "connect", "open_test_client"])
def test_trio_only_calls_from_asyncio_raise_trio_required(pg_dsn: str, name: str) -> None:
    call = _entry_points(pg_dsn)[name]
    with pytest.raises(delta.TrioRequiredError, match=r"runs on Trio, but was called from asyncio"):
        asyncio.run(call())  # type: ignore[arg-type]


async def test_the_asyncio_producer_runs_under_asyncio_run(pg_dsn: str, schema: str) -> None:
    async def app() -> list[bool]:
        async with await psycopg.AsyncConnection.connect(pg_dsn, autocommit=True) as conn:
            first = await producer.inform_async(conn, Note("n1", "hi"), schema=schema)
            again = await producer.inform_async(conn, Note("n1", "hi"), schema=schema)
            await producer.schedule_inform_async(conn, "note", schema=schema)
            with pytest.raises(delta.ResourceStateError, match="is scheduled"):
                await producer.invalidate_async(conn, Note("n1"), schema=schema)
            with pytest.raises(delta.ConfigError, match="call inform"):
                await producer.inform_async(psycopg.connect(pg_dsn), Note("x"), schema=schema)  # type: ignore[arg-type]
            return [first.changed, again.changed]

    assert await trio.to_thread.run_sync(lambda: asyncio.run(app())) == [True, False]
    assert sql(pg_dsn, f"select kind, requested_at is not null from {schema}.controllers") == [
        ("note", True)
    ]


async def test_producer_failures_are_store_errors(pg_dsn: str, schema: str) -> None:
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        with pytest.raises(delta.NotMigratedError, match="trio-delta migrate --schema nosuch"):
            producer.inform(conn, Note("n"), schema="nosuch")
        with pytest.raises(delta.ConfigError, match="invalid schema"):
            producer.inform(conn, Note("n"), schema="Bad Schema")
        with pytest.raises(delta.ConfigError, match="takes a psycopg Connection, got object"):
            producer.inform(object(), Note("n"), schema=schema)  # type: ignore[arg-type]
    async with delta.connect(pg_dsn) as aconn:
        with pytest.raises(delta.ConfigError, match="await inform_async"):
            producer.inform(aconn, Note("n"), schema=schema)  # type: ignore[arg-type]
    with psycopg.connect(pg_dsn) as conn:
        with pytest.raises(psycopg.errors.DivisionByZero):
            conn.execute("select 1/0")
        with pytest.raises(delta.StoreError, match="inform failed"):
            producer.inform(conn, Note("n"), schema=schema)  # the transaction is aborted
