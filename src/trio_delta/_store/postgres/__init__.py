"""The Postgres adapter of the store port (psycopg 3, through the bridge).

:class:`PostgresStore` is one schema on one database, as the port's three
parts over one set of connections (see :mod:`.connections`).
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from contextlib import asynccontextmanager
from datetime import datetime

import psycopg

from ..._errors import StoreError
from ..._logs import get_logger
from ...migrations.runner import LATEST_VERSION, check_version
from .._bridge import Driver, open_bridge
from .columns import load_json, row_from_columns
from .connections import (
    Conn,
    Connections,
    lane_settings,
    notify_channel,
    settings_params,
)
from .control import PostgresControl
from .insights import PostgresInsights
from .queue import PostgresListener, PostgresQueue, PostgresTransaction

__all__ = [
    "PostgresListener",
    "PostgresStore",
    "PostgresTransaction",
    "lane_settings",
    "load_json",
    "notify_channel",
    "open_postgres_store",
    "row_from_columns",
    "settings_params",
]

log = get_logger("trio_delta.store")


class PostgresStore:
    """The store on a Postgres database; open it with :func:`open_postgres_store`."""

    # See Store.notifications_reliable: clients poll (Config.poll_interval).
    notifications_reliable = False

    def __init__(self, connections: Connections) -> None:
        self.connections = connections
        self.schema = connections.schema
        self.queue = PostgresQueue(self.connections)
        self.control = PostgresControl(self.connections)
        self.insights = PostgresInsights(self.connections)

    def __repr__(self) -> str:
        return f"<PostgresStore {self.connections.describe()} schema={self.schema}>"

    async def database_now(self) -> datetime:
        async def run(conn: Conn) -> datetime:
            cur = await conn.execute(self.connections.queries["database_now"])
            row = await cur.fetchone()
            assert row is not None
            return row[0]

        return await self.connections.on_lane("claim", run, "reading the database time")

    async def ping(self) -> None:
        await self.connections.execute(None, "database_now", {}, "checking the database")

    def pool_usage(self) -> tuple[int, int]:
        return self.connections.pool_usage()

    async def schema_version(self) -> int | None:
        async def run(conn: Conn) -> int | None:
            try:
                cur = await conn.execute(self.connections.queries["schema_version"])
            except psycopg.errors.UndefinedTable:
                return None
            row = await cur.fetchone()
            return None if row is None else int(row[0])

        return await self.connections.on_lane("claim", run, "checking the schema")

    async def read_only_reason(self) -> str | None:
        """Why this database takes no writes (a hot standby, read-only by
        default), or None when it does."""

        async def run(conn: Conn) -> tuple[bool, bool]:
            cur = await conn.execute(self.connections.queries["read_only"])
            row = await cur.fetchone()
            assert row is not None
            return bool(row[0]), bool(row[1])

        standby, read_only = await self.connections.on_lane(
            "claim", run, "checking the database is writable"
        )
        if standby:
            return "it is a hot standby in recovery"
        if read_only:
            return "default_transaction_read_only is on"
        return None

    async def aclose(self) -> None:
        await self.connections.aclose()


@asynccontextmanager
async def open_postgres_store(
    dsn: str,
    *,
    schema: str,
    pool_size: int,
    driver: Driver = "native",
    check_schema: bool = True,
    writable: bool = True,
    lock_timeout: float | None = None,
    leader_lock_timeout: float | None = None,
    async_commit: bool = True,
    session_state: bool = True,
    dedicated: bool = True,
    listen_dsn: str | None = None,
) -> AsyncGenerator[PostgresStore, None]:
    """Open the driver, a connection pool and the store.

    The first statement runs at once, so a bad DSN fails here with one clear
    error; with ``check_schema`` it raises :class:`NotMigratedError` unless
    the schema is current, and with ``writable`` :class:`StoreError` when
    the database takes no writes (a client there would only ever fail).
    ``lock_timeout`` bounds every lock wait of the store's own statements
    (None: no bound); the leader's connection uses ``leader_lock_timeout``
    instead, when given. ``async_commit``: claims, outcomes and the
    leader's renewals commit without waiting for the WAL flush.
    ``session_state``, ``dedicated`` and ``listen_dsn``: see
    :class:`~.connections.Connections`.
    """
    async with open_bridge(driver) as bridge:
        store = PostgresStore(
            Connections(
                dsn=dsn,
                schema=schema,
                bridge=bridge,
                pool_size=pool_size,
                lock_timeout=lock_timeout,
                leader_lock_timeout=leader_lock_timeout,
                async_commit=async_commit,
                session_state=session_state,
                dedicated=dedicated,
                listen_dsn=listen_dsn,
            )
        )
        pool = store.connections.pool
        try:
            version = await store.schema_version()
            if check_schema:
                check_version(version, schema)
                if version is not None and version > LATEST_VERSION:
                    log.warning(
                        "schema %r is at version %d, newer than this library's %d; "
                        "upgrade trio_delta",
                        schema,
                        version,
                        LATEST_VERSION,
                    )
            if writable and (reason := await store.read_only_reason()) is not None:
                raise StoreError(
                    f"database {store.connections.describe()} is read-only ({reason}): "
                    "trio_delta writes to it; point the DSN at the primary (libpq's "
                    "target_session_attrs=read-write picks it among several hosts)"
                )
            await store.connections.call(lambda: pool.open(wait=False), what="opening the pool")
            yield store
        finally:
            await store.aclose()
