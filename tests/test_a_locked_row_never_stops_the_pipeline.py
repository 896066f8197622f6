"""One row locked by another transaction never stops a client's pipeline.

``inform`` of a row locked elsewhere (a ``SELECT ... FOR UPDATE``, a user's
open transaction) blocked with no bound. Now it gives up after
``lock_timeout``, naming the row.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from typing import Any, ClassVar

import psycopg
import pytest
import trio

import trio_delta as delta

from .conftest import sql

LOCK_TIMEOUT = 1.0


@dataclass
class Thing:
    kind: ClassVar[str] = "thing"
    name: str
    version: int = 0

    def id(self) -> str:
        return self.name


class GatedController(delta.Controller[Thing]):
    """Work waits for ``gate``, so rows are pending when the test locks one."""

    def __init__(self) -> None:
        self.gate = trio.Event()
        self.worked: list[tuple[str, int, int]] = []  # name, version, attempt

    async def work(self, resource: delta.Resource[Thing]) -> None:
        await self.gate.wait()
        self.worked.append((resource.object.name, resource.object.version, resource.attempt))
        await trio.sleep(0.002)


def states(dsn: str, schema: str) -> dict[str, int]:
    return dict(sql(dsn, f"select state, count(*) from {schema}.resources group by 1"))


async def wait_for(predicate: Any, within: float, what: str) -> None:
    deadline = trio.current_time() + within
    while not await trio.to_thread.run_sync(predicate):
        if trio.current_time() > deadline:
            raise AssertionError(f"not within {within}s: {what}")
        await trio.sleep(0.1)


@contextmanager
def row_locked(dsn: str, schema: str, object_id: str) -> Iterator[None]:
    """``SELECT ... FOR UPDATE`` of one row from another session, held
    until the block ends."""
    conn = psycopg.connect(dsn)
    try:
        conn.execute(f"select id from {schema}.resources where object_id = %s for update",
                     [object_id])
        yield
    finally:
        conn.rollback()
        conn.close()


@asynccontextmanager
async def running_client(pg_dsn: str, schema: str, controller: GatedController
                         ) -> AsyncIterator[delta.Client]:
    controllers = delta.Controllers()
    delta.add_controller(controllers, controller)
    config = delta.Config(schema=schema, poll_interval=0.2, shutdown_grace=1.0,
                          lock_timeout=LOCK_TIMEOUT)
    namespaces = {"default": delta.NamespaceConfig(max_workers=20)}
    async with delta.open_delta_client(pg_dsn, controllers, namespaces=namespaces,
                                       config=config) as client:
        yield client


async def test_inform_of_a_locked_row_gives_up_after_the_lock_timeout_naming_it(
    pg_dsn: str, schema: str
) -> None:
    controller = GatedController()
    async with running_client(pg_dsn, schema, controller) as client:
        await client.inform(Thing("held"))
        with row_locked(pg_dsn, schema, "held"):
            started = time.monotonic()
            with trio.fail_after(10), pytest.raises(delta.LockTimeoutError) as caught:
                await client.inform(Thing("held", version=2))
            waited = time.monotonic() - started
            # Meanwhile another object is informed as usual.
            await client.inform(Thing("free"))
        assert LOCK_TIMEOUT * 0.9 <= waited < LOCK_TIMEOUT + 3
        assert isinstance(caught.value, delta.StoreError)
        assert (caught.value.kind, caught.value.object_id) == ("thing", "held")
        assert "thing 'held'" in str(caught.value)
        assert not caught.value.maybe_applied
        row = await client.get_resource("thing", "held")
        assert row is not None
        assert row.object == Thing("held", 0), "nothing was written"


async def test_inform_tx_gives_up_too_and_leaves_the_users_lock_timeout_alone(
    pg_dsn: str, schema: str
) -> None:
    controller = GatedController()
    async with running_client(pg_dsn, schema, controller) as client:
        await client.inform(Thing("held"))
        sent_at: list[float] = []

        async def in_users_transaction() -> None:
            async with client.transaction() as tx:
                await tx.execute("set local lock_timeout = '30s'")
                await client.inform_tx(tx, Thing("other"))
                # The user's own statements keep the user's setting.
                assert await tx.execute("show lock_timeout") == [("30s",)]
                sent_at.append(time.monotonic())
                await client.inform_tx(tx, Thing("held", version=2))

        with row_locked(pg_dsn, schema, "held"):
            with trio.fail_after(10), pytest.raises(delta.LockTimeoutError, match="thing 'held'"):
                await in_users_transaction()
            assert time.monotonic() - sent_at[0] < LOCK_TIMEOUT + 3
        assert await client.get_resource("thing", "other") is None, "rolled back"

