"""An inform waits for the server as few times as it can: one object
without ``compare`` in one round trip; with ``compare``, two (BEGIN goes with
the read of the stored row, COMMIT with the write). Counted from libpq's
protocol trace of the application's own autocommit connection, on the
synchronous and the Trio runner."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import psycopg
import pytest

import trio_delta as delta
from trio_delta import producer

from ..conftest import sql
from ..models import Note, User


def round_trips(trace: Path) -> int:
    """Times the client sent something and then read the server's answer."""
    sides = [line.split("\t")[1] for line in trace.read_text().splitlines() if "\t" in line]
    return sum(1 for a, b in itertools.pairwise(sides) if (a, b) == ("F", "B"))


CASES: list[tuple[str, Any, int, bool]] = [
    # (what, object, round trips, changed); run in this order on one schema
    ("new, no compare", Note("n1", "a"), 1, True),
    ("changed, no compare", Note("n1", "b"), 1, True),
    ("unchanged, no compare", Note("n1", "b"), 2, False),
    ("new, compare", User("u@x.io", "v2", updated_at=2), 2, True),
    ("newer, compare", User("u@x.io", "v3", updated_at=3), 2, True),
    ("older, compare", User("u@x.io", "v1", updated_at=1), 2, False),
]


async def test_sync_producer_round_trips(pg_dsn: str, schema: str, tmp_path: Path) -> None:
    for what, obj, expected, changed in CASES:
        trace = tmp_path / f"{what}.trace"
        with psycopg.connect(pg_dsn, autocommit=True) as conn, trace.open("w") as out:
            conn.pgconn.trace(out.fileno())
            result = producer.inform(conn, obj, schema=schema)
            conn.pgconn.untrace()
            assert conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE, what
        assert (what, round_trips(trace), result.changed) == (what, expected, changed)
    assert sql(pg_dsn, f"select object->>'name' from {schema}.resources where kind = 'user'") == [
        ("v3",)
    ]


async def test_trio_connection_round_trips(pg_dsn: str, schema: str, tmp_path: Path) -> None:
    for what, obj, expected, changed in CASES:
        trace = tmp_path / f"{what}.trace"
        async with delta.connect(pg_dsn, autocommit=True) as conn:
            with trace.open("w") as out:
                conn.pgconn.trace(out.fileno())
                result = await producer.inform_async(conn, obj, schema=schema)
                conn.pgconn.untrace()
        assert (what, round_trips(trace), result.changed) == (what, expected, changed)


async def test_a_failed_write_rolls_its_own_transaction_back(pg_dsn: str, schema: str) -> None:
    """The transaction a runner opens is rolled back when the write fails
    (after the read that began it), leaving the application's connection
    idle and nothing written."""
    with psycopg.connect(pg_dsn, autocommit=True) as setup:
        producer.inform(setup, User("u@x.io", "v1", 1), schema=schema)
    check = f"alter table {schema}.resources add constraint no_v9 check (object->>'name' <> 'v9')"
    sql(pg_dsn, check)
    async with delta.connect(pg_dsn, autocommit=True) as conn:
        with pytest.raises(delta.StoreError, match="no_v9"):
            await producer.inform_async(conn, User("u@x.io", "v9", 9), schema=schema)
        assert conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
        await producer.inform_async(conn, User("u@x.io", "v2", 2), schema=schema)
    assert sql(pg_dsn, f"select object->>'name' from {schema}.resources") == [("v2",)]


async def test_a_failed_read_rolls_its_own_transaction_back(pg_dsn: str, schema: str) -> None:
    """A read (the stored row, locked for the compare) that fails ends the
    transaction it began: nothing written, the connection idle."""
    with psycopg.connect(pg_dsn, autocommit=True) as setup:
        producer.inform(setup, User("u@x.io", "v1", 1), schema=schema)
    with psycopg.connect(pg_dsn) as holder:
        holder.execute(f"select 1 from {schema}.resources for update")
        async with delta.connect(pg_dsn, autocommit=True) as conn:
            await conn.execute("set lock_timeout = '100ms'")
            with pytest.raises(delta.LockTimeoutError):
                await producer.inform_async(conn, User("u@x.io", "v2", 2), schema=schema)
            assert conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
        holder.rollback()
    assert sql(pg_dsn, f"select object->>'name' from {schema}.resources") == [("v1",)]
