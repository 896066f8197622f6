"""The store fixtures: every test that takes ``store`` runs against the
memory store and against Postgres (the conformance suite)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest

import trio_delta as delta
from trio_delta._store.memory import open_memory_store
from trio_delta._store.port import Store
from trio_delta._store.postgres import open_postgres_store


@pytest.fixture(params=["memory", "postgres"])
def backend(request: pytest.FixtureRequest) -> tuple[str, str, str]:
    """Which store; for Postgres also the DSN and this test's own schema
    (the ``schema_name`` fixture drops it afterwards)."""
    if request.param == "memory":
        return ("memory", "", "")
    return ("postgres", request.getfixturevalue("pg_dsn"), request.getfixturevalue("schema_name"))


@asynccontextmanager
async def lock_bounded_store(
    backend: tuple[str, str, str], *, lock_timeout: float | None
) -> AsyncIterator[Store]:
    """The backend's store, whose upserts wait at most ``lock_timeout`` for a
    row another transaction holds."""
    kind, dsn, schema = backend
    if kind == "memory":
        async with open_memory_store(lock_timeout=lock_timeout) as memory:
            yield memory
        return
    await delta.migrate(dsn, schema=schema)
    async with open_postgres_store(
        dsn, schema=schema, pool_size=4, lock_timeout=lock_timeout
    ) as pg:
        yield pg


@pytest.fixture
async def store(backend: tuple[str, str, str]) -> AsyncIterator[Store]:
    async with lock_bounded_store(backend, lock_timeout=None) as opened:
        yield opened
