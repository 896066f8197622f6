"""Every way an application can inform inside a transaction of its own, behind
one interface, so that a behaviour is asserted once for all of them.

A path runs an application's unit of work: insert a row of its own, inform
some objects, then commit, roll back, or raise. The synchronous and asyncio
paths run in a thread (asyncio in a loop of its own there), as they would
in a web framework's process beside the Trio workers.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import psycopg
import trio

import trio_delta as delta
import trio_delta.sqlalchemy as delta_sa
from trio_delta import producer

Ending = Literal["commit", "rollback", "raise"]


class AppError(Exception):
    """What the application's own code raises inside its transaction."""


@dataclass
class Unit:
    """One unit of work of the application."""

    table: str  # the application's own table: (key text primary key)
    key: str  # the row the application inserts
    objects: Sequence[Any]
    ending: Ending = "commit"
    #: Catch an ObjectError from the inform and carry on to ``ending``.
    carry_on: bool = False


@dataclass
class Done:
    results: list[delta.InformResult[Any]]
    committed_at: float | None  # time.perf_counter() right after the commit
    refused: delta.ObjectError | None = None


class Refused:
    """Catches an ObjectError from an inform when the unit carries on."""

    def __init__(self, unit: Unit) -> None:
        self.unit = unit
        self.error: delta.ObjectError | None = None

    def __enter__(self) -> Refused:
        return self

    def __exit__(self, kind: object, exc: BaseException | None, tb: object) -> bool:
        if isinstance(exc, delta.ObjectError) and self.unit.carry_on:
            self.error = exc
            return True
        return False


def _insert(table: str) -> str:
    return f"insert into {table} (key) values (%s)"


# -- the paths ----------------------------------------------------------------------


async def via_client_transaction(c: delta.Client, dsn: str, schema: str, unit: Unit) -> Done:
    results: list[delta.InformResult[Any]] = []
    refused = Refused(unit)
    try:
        async with c.transaction() as tx:
            await tx.execute(_insert(unit.table), [unit.key])
            with refused:
                results = await c.inform_many_tx(tx, unit.objects)
            if unit.ending == "raise":
                raise AppError("the application failed")
            if unit.ending == "rollback":
                raise AppError("no explicit rollback here: leaving the block by an error is it")
    except AppError:
        return Done(results, None, refused.error)
    return Done(results, time.perf_counter(), refused.error)


async def via_trio_connection(c: delta.Client, dsn: str, schema: str, unit: Unit) -> Done:
    results: list[delta.InformResult[Any]] = []
    refused = Refused(unit)
    try:
        async with delta.connect(dsn) as conn:
            await conn.execute(_insert(unit.table), [unit.key])
            with refused:
                results = await c.inform_many_tx(conn, unit.objects)
            if unit.ending == "raise":
                raise AppError("the application failed")
            if unit.ending == "rollback":
                await conn.rollback()
                return Done(results, None, refused.error)
            await conn.commit()
            return Done(results, time.perf_counter(), refused.error)
    except AppError:
        return Done(results, None, refused.error)


def _sync_unit(
    dsn: str,
    unit: Unit,
    inform: Callable[[psycopg.Connection[Any]], list[Any]],
    cursor_factory: type[psycopg.Cursor[Any]] = psycopg.Cursor,
) -> Done:
    results: list[Any] = []
    refused = Refused(unit)
    try:
        with psycopg.connect(dsn, cursor_factory=cursor_factory) as conn:
            conn.execute(_insert(unit.table), [unit.key])
            with refused:
                results = inform(conn)
            if unit.ending == "raise":
                raise AppError("the application failed")
            if unit.ending == "rollback":
                conn.rollback()
                return Done(results, None, refused.error)
            conn.commit()
            return Done(results, time.perf_counter(), refused.error)
    except AppError:
        return Done(results, None, refused.error)


async def via_sync_connection(c: delta.Client, dsn: str, schema: str, unit: Unit) -> Done:
    """The client's ``inform_tx`` on a synchronous connection the
    application holds (here opened and driven from a thread)."""
    token = trio.lowlevel.current_trio_token()

    def inform(conn: psycopg.Connection[Any]) -> list[Any]:
        return trio.from_thread.run(c.inform_many_tx, conn, unit.objects, trio_token=token)

    return await trio.to_thread.run_sync(_sync_unit, dsn, unit, inform)


async def via_sync_producer(c: delta.Client, dsn: str, schema: str, unit: Unit) -> Done:
    def inform(conn: psycopg.Connection[Any]) -> list[Any]:
        return producer.inform_many(conn, unit.objects, schema=schema)

    return await trio.to_thread.run_sync(_sync_unit, dsn, unit, inform)


async def via_sync_producer_client_binding(
    c: delta.Client, dsn: str, schema: str, unit: Unit
) -> Done:
    """As an application whose cursors bind parameters on the client
    (Django's default, and a common setting behind poolers): such cursors
    return no binary rows."""

    def inform(conn: psycopg.Connection[Any]) -> list[Any]:
        return producer.inform_many(conn, unit.objects, schema=schema)

    return await trio.to_thread.run_sync(_sync_unit, dsn, unit, inform, psycopg.ClientCursor)


async def _asyncio_unit(
    dsn: str,
    schema: str,
    unit: Unit,
    cursor_factory: type[psycopg.AsyncCursor[Any]] = psycopg.AsyncCursor,
) -> Done:
    results: list[Any] = []
    refused = Refused(unit)
    try:
        async with await psycopg.AsyncConnection.connect(
            dsn, cursor_factory=cursor_factory
        ) as conn:
            await conn.execute(_insert(unit.table), [unit.key])
            with refused:
                results = await producer.inform_many_async(conn, unit.objects, schema=schema)
            if unit.ending == "raise":
                raise AppError("the application failed")
            if unit.ending == "rollback":
                await conn.rollback()
                return Done(results, None, refused.error)
            await conn.commit()
            return Done(results, time.perf_counter(), refused.error)
    except AppError:
        return Done(results, None, refused.error)


async def via_asyncio_producer(c: delta.Client, dsn: str, schema: str, unit: Unit) -> Done:
    return await trio.to_thread.run_sync(lambda: asyncio.run(_asyncio_unit(dsn, schema, unit)))


async def via_asyncio_producer_client_binding(
    c: delta.Client, dsn: str, schema: str, unit: Unit
) -> Done:
    return await trio.to_thread.run_sync(
        lambda: asyncio.run(_asyncio_unit(dsn, schema, unit, psycopg.AsyncClientCursor))
    )


def _sqlalchemy_url(dsn: str) -> str:
    params = psycopg.conninfo.conninfo_to_dict(dsn)
    user, host = params.get("user", "postgres"), params.get("host", "127.0.0.1")
    port, db = params.get("port", "5432"), params.get("dbname", "postgres")
    return f"postgresql+psycopg://{user}@{host}:{port}/{db}"


def _sqlalchemy_unit(dsn: str, schema: str, unit: Unit) -> Done:
    from sqlalchemy import create_engine, text
    from sqlalchemy.orm import Session

    engine = create_engine(_sqlalchemy_url(dsn))
    results: list[Any] = []
    refused = Refused(unit)
    try:
        with Session(engine) as session:
            session.execute(text(f"insert into {unit.table} (key) values (:k)"), {"k": unit.key})
            conn = delta_sa.psycopg_connection(session)
            with refused:
                results = producer.inform_many(conn, unit.objects, schema=schema)
            if unit.ending == "raise":
                raise AppError("the application failed")
            if unit.ending == "rollback":
                session.rollback()
                return Done(results, None, refused.error)
            session.commit()
            return Done(results, time.perf_counter(), refused.error)
    except AppError:
        return Done(results, None, refused.error)
    finally:
        engine.dispose()


async def via_sqlalchemy_session(c: delta.Client, dsn: str, schema: str, unit: Unit) -> Done:
    return await trio.to_thread.run_sync(_sqlalchemy_unit, dsn, schema, unit)


async def _sqlalchemy_async_unit(dsn: str, schema: str, unit: Unit) -> Done:
    from sqlalchemy import text
    from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine

    engine = create_async_engine(_sqlalchemy_url(dsn))
    results: list[Any] = []
    refused = Refused(unit)
    try:
        async with AsyncSession(engine) as session:
            await session.execute(
                text(f"insert into {unit.table} (key) values (:k)"), {"k": unit.key}
            )
            conn = await delta_sa.async_psycopg_connection(session)
            with refused:
                results = await producer.inform_many_async(conn, unit.objects, schema=schema)
            if unit.ending == "raise":
                raise AppError("the application failed")
            if unit.ending == "rollback":
                await session.rollback()
                return Done(results, None, refused.error)
            await session.commit()
            return Done(results, time.perf_counter(), refused.error)
    except AppError:
        return Done(results, None, refused.error)
    finally:
        await engine.dispose()


async def via_sqlalchemy_async_session(c: delta.Client, dsn: str, schema: str, unit: Unit) -> Done:
    return await trio.to_thread.run_sync(
        lambda: asyncio.run(_sqlalchemy_async_unit(dsn, schema, unit))
    )


Path = Callable[[delta.Client, str, str, Unit], Awaitable[Done]]

PATHS: dict[str, Path] = {
    "client-transaction": via_client_transaction,
    "trio-connection": via_trio_connection,
    "sync-connection": via_sync_connection,
    "sync-producer": via_sync_producer,
    "sync-producer-client-binding": via_sync_producer_client_binding,
    "asyncio-producer": via_asyncio_producer,
    "asyncio-producer-client-binding": via_asyncio_producer_client_binding,
    "sqlalchemy-session": via_sqlalchemy_session,
    "sqlalchemy-async-session": via_sqlalchemy_async_session,
}
