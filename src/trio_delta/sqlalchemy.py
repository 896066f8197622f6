"""Inform inside a SQLAlchemy transaction: the psycopg connection under a session.

SQLAlchemy on psycopg 3 (URLs ``postgresql+psycopg://``) runs a session's
statements on a psycopg connection; informing on that same connection puts
the resource in the session's transaction::

    with Session(engine) as session:
        session.add(Order(...))
        producer.inform(psycopg_connection(session), OrderObject(...))
        session.commit()                       # the order and the resource, together

    async with AsyncSession(engine) as session:
        session.add(Order(...))
        conn = await async_psycopg_connection(session)
        await producer.inform_async(conn, OrderObject(...))
        await session.commit()

Install with the ``sqlalchemy`` extra (``pip install 'trio-delta[sqlalchemy]'``);
this module imports SQLAlchemy only when called.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

import psycopg

from ._errors import ConfigError
from ._util import fixup_module_metadata

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection
    from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession
    from sqlalchemy.orm import Session

__all__ = ["async_psycopg_connection", "psycopg_connection"]


def _not_psycopg(driver: object) -> ConfigError:
    return ConfigError(
        "the SQLAlchemy engine must run on psycopg 3 (a postgresql+psycopg:// URL); "
        f"its connection is a {type(driver).__module__}.{type(driver).__name__}"
    )


def psycopg_connection(session: Session | Connection) -> psycopg.Connection[Any]:
    """The psycopg connection of ``session`` (a ``Session`` or a
    ``Connection``), in the session's transaction (begun if it was not)."""
    from sqlalchemy.orm import Session

    conn = session.connection() if isinstance(session, Session) else session
    driver: object = conn.connection.driver_connection
    if not isinstance(driver, psycopg.Connection):
        raise _not_psycopg(driver)
    return cast("psycopg.Connection[Any]", driver)


async def async_psycopg_connection(
    session: AsyncSession | AsyncConnection,
) -> psycopg.AsyncConnection[Any]:
    """The psycopg ``AsyncConnection`` of ``session`` (an ``AsyncSession``
    or an ``AsyncConnection``), in the session's transaction."""
    from sqlalchemy.ext.asyncio import AsyncSession

    conn = await session.connection() if isinstance(session, AsyncSession) else session
    raw = await conn.get_raw_connection()
    driver: object = raw.driver_connection
    if not isinstance(driver, psycopg.AsyncConnection):
        raise _not_psycopg(driver)
    return cast("psycopg.AsyncConnection[Any]", driver)


fixup_module_metadata(__name__, globals())
del fixup_module_metadata
