"""``trio_delta.connect``: psycopg on Trio, for the application's own SQL.

Trio has no maintained Postgres driver of its own; the client's connections
are psycopg's ``AsyncConnection`` waiting on Trio (``_store/trio_psycopg``).
This hands the same kind of connection to the application, so that a Trio
program can run its own statements and :meth:`Client.inform_tx` in one
transaction.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from contextlib import asynccontextmanager
from typing import Any

import psycopg
from psycopg.conninfo import make_conninfo
from psycopg.rows import AsyncRowFactory

from ._errors import ConfigError
from ._store import trio_psycopg
from ._store.dsn import normalize_dsn, with_connect_timeout
from ._util import require_trio


@asynccontextmanager
async def connect(
    dsn: str = "",
    *,
    autocommit: bool = False,
    row_factory: AsyncRowFactory[Any] | None = None,
    prepare_threshold: int | None = 5,
    **kwargs: Any,
) -> AsyncGenerator[psycopg.AsyncConnection[Any], None]:
    """Open a psycopg ``AsyncConnection`` that runs on Trio; close it on exit.

    Use it as psycopg's own: ``await conn.execute(...)``, ``async with
    conn.transaction():``, cursors, ``COPY``; pass it to
    :meth:`Client.inform_tx` to inform inside its transaction. ``dsn`` and
    ``kwargs`` are a libpq connection string and parameters, as for
    ``psycopg.AsyncConnection.connect``; without ``connect_timeout``, 10 s.

    Like psycopg's connection block, a block that ends normally commits
    what is still open; one that raises (or is cancelled) rolls back, by
    closing the connection. Tasks may share the connection: its
    operations run one at a time. A cancelled statement is cancelled on the
    server too, and the connection stays usable.
    """
    require_trio("trio_delta.connect()")
    try:
        conninfo = make_conninfo(dsn, **kwargs) if kwargs else dsn
    except psycopg.ProgrammingError as exc:
        raise ConfigError(f"invalid connection parameters: {exc}") from None
    conn = await trio_psycopg.connect(
        with_connect_timeout(normalize_dsn(conninfo)), autocommit=autocommit
    )
    try:
        if row_factory is not None:
            conn.row_factory = row_factory
        conn.prepare_threshold = prepare_threshold
        yield conn
        if not conn.closed:
            await conn.commit()
    finally:
        await conn.close()
