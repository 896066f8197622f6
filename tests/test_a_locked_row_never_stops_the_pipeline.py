"""One row locked by another transaction never stops a client's pipeline.

A ``SELECT ... FOR UPDATE`` on one pending row, or a user's transaction that
informed a changed version of an object being worked and stays open, once
stopped every outcome: the outcome writer's batch waited on the row lock,
its channel filled, the workers blocked behind it, and nothing was logged
(0 of 6,000 synced in 20 s). Now the held row's outcome waits aside, is
logged once held past ``lock_timeout``, and is written when the lock goes;
``inform`` of a held row gives up after ``lock_timeout`` naming it.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from typing import Any, ClassVar

import psycopg
import pytest
import trio

import trio_delta as delta

from .conftest import sql

QUEUED = 2000
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
        conn.execute(
            f"select id from {schema}.resources where object_id = %s for update", [object_id]
        )
        yield
    finally:
        conn.rollback()
        conn.close()


@asynccontextmanager
async def running_client(
    pg_dsn: str, schema: str, controller: GatedController
) -> AsyncIterator[delta.Client]:
    controllers = delta.Controllers()
    delta.add_controller(controllers, controller)
    config = delta.Config(
        schema=schema, poll_interval=0.2, shutdown_grace=1.0, lock_timeout=LOCK_TIMEOUT
    )
    namespaces = {"default": delta.NamespaceConfig(max_workers=20)}
    async with delta.open_delta_client(
        pg_dsn, controllers, namespaces=namespaces, config=config
    ) as client:
        yield client


async def queue_and_pick_a_pending_row(pg_dsn: str, schema: str, client: delta.Client) -> str:
    async with client.transaction() as tx:
        for i in range(QUEUED):
            await client.inform_tx(tx, Thing(f"t{i:05d}"))
    await wait_for(
        lambda: states(pg_dsn, schema).get("pending", 0) >= 20,
        20,
        "the workers claim their first rows",
    )
    ((object_id,),) = sql(
        pg_dsn,
        f"select object_id from {schema}.resources where state = 'pending' order by id limit 1",
    )
    return str(object_id)


def held_warnings(caplog: pytest.LogCaptureFixture, object_id: str) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.levelno == logging.WARNING
        and f"thing {object_id!r}" in r.getMessage()
        and "locked" in r.getMessage()
    ]


async def test_the_other_rows_sync_while_one_is_locked_for_update(
    pg_dsn: str, schema: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="trio_delta")
    controller = GatedController()
    async with running_client(pg_dsn, schema, controller) as client:
        locked = await queue_and_pick_a_pending_row(pg_dsn, schema, client)
        with row_locked(pg_dsn, schema, locked):
            held_since = time.monotonic()
            controller.gate.set()
            await wait_for(
                lambda: states(pg_dsn, schema).get("synced", 0) == QUEUED - 1,
                60,
                f"{QUEUED - 1} rows synced while one is locked",
            )
            assert states(pg_dsn, schema) == {"synced": QUEUED - 1, "pending": 1}
            await wait_for(
                lambda: bool(held_warnings(caplog, locked)), 10, "a warning names the locked row"
            )
            assert time.monotonic() - held_since >= LOCK_TIMEOUT
        await wait_for(
            lambda: states(pg_dsn, schema) == {"synced": QUEUED},
            10,
            "the locked row syncs once released",
        )
    assert len(held_warnings(caplog, locked)) == 1, "logged once, not at every retry"
    assert Counter(name for name, _, _ in controller.worked) == Counter(
        f"t{i:05d}" for i in range(QUEUED)
    ), "every row worked exactly once"
    (row,) = sql(pg_dsn, f"select attempt from {schema}.resources where object_id = %s", [locked])
    assert row == (1,)


async def test_an_open_transaction_that_informed_a_new_version_stops_nothing(
    pg_dsn: str, schema: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="trio_delta")
    controller = GatedController()
    async with running_client(pg_dsn, schema, controller) as client:
        locked = await queue_and_pick_a_pending_row(pg_dsn, schema, client)
        release = trio.Event()

        async def hold_new_version(task_status: trio.TaskStatus[None]) -> None:
            async with client.transaction() as tx:
                await client.inform_tx(tx, Thing(locked, version=1))
                task_status.started()
                await release.wait()

        async with trio.open_nursery() as nursery:
            await nursery.start(hold_new_version)
            controller.gate.set()
            await wait_for(
                lambda: states(pg_dsn, schema).get("synced", 0) == QUEUED - 1,
                60,
                f"{QUEUED - 1} rows synced while one is held by a transaction",
            )
            await wait_for(
                lambda: bool(held_warnings(caplog, locked)), 10, "a warning names the held row"
            )
            release.set()
        # The version committed meanwhile is worked in turn.
        await wait_for(
            lambda: (
                states(pg_dsn, schema) == {"synced": QUEUED} and (locked, 1, 1) in controller.worked
            ),
            10,
            "the new version is worked once the transaction commits",
        )
    assert [w for w in controller.worked if w[0] == locked] == [(locked, 0, 1), (locked, 1, 1)]


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
