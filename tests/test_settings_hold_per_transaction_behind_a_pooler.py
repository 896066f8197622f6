"""Behind a transaction-mode pooler (``prepared_statements=False``), the
client's settings hold for its own transactions and for nothing else.

The lock timeout still bounds an inform of a row another transaction holds
(applied per transaction, ``SET LOCAL``); and none of the client's settings
(``lock_timeout``, ``synchronous_commit = off``, ``enable_seqscan = off``,
...) is left on the server connections the pooler hands to others.
"""

from __future__ import annotations

import dataclasses
import time
from contextlib import ExitStack

import psycopg
import pytest
import trio

import trio_delta as delta
from trio_delta._informing import STREAM_CHUNK

from .models import Note, RecordingController, User, controllers_for
from .pgbouncer import PgBouncer

SETTINGS = ("lock_timeout", "synchronous_commit", "enable_seqscan", "enable_nestloop", "jit")


def pooled_config(config: delta.Config, pg_dsn: str) -> delta.Config:
    return dataclasses.replace(
        config, prepared_statements=False, listen_dsn=pg_dsn, lock_timeout=0.3
    )


async def test_the_lock_timeout_bounds_an_inform_through_the_pooler(
    pg_dsn: str, pgbouncer: PgBouncer, config: delta.Config
) -> None:
    controller = RecordingController()
    controller.block = trio.Event()  # work waits: the row stays as informed
    async with delta.open_delta_client(
        pgbouncer.dsn, controllers_for(controller), config=pooled_config(config, pg_dsn)
    ) as client:
        await client.inform(User("held@x", "one", 1))
        with psycopg.connect(pg_dsn) as holder:
            # In a thread: the lock may have to wait for the client's claim
            # of the row to commit, which needs Trio running.
            await trio.to_thread.run_sync(
                holder.execute,
                f"select 1 from {config.schema}.resources where object_id = 'held@x' for update",
            )
            start = time.monotonic()
            with pytest.raises(delta.LockTimeoutError) as caught:
                await client.inform(User("held@x", "two", 2))
            waited = time.monotonic() - start
            holder.rollback()
        controller.block.set()
    assert caught.value.object_id == "held@x"
    assert 0.25 <= waited < 3.0, waited


@pytest.mark.parametrize("model", ["note", "user with compare"])
async def test_the_lock_timeout_bounds_a_big_inform_many_through_the_pooler(
    pg_dsn: str, pgbouncer: PgBouncer, config: delta.Config, model: str
) -> None:
    # More than one chunk: written in a transaction of its own, chunk by
    # chunk (with a stale check, each read first), bounded all along.
    def obj(i: int) -> Note | User:
        return Note(f"k{i}", "new") if model == "note" else User(f"k{i}", "new", 2)

    count = STREAM_CHUNK * 2 + 5
    async with delta.open_delta_client(
        pgbouncer.dsn, delta.Controllers(), config=pooled_config(config, pg_dsn)
    ) as client:
        held = f"k{STREAM_CHUNK + 3}"
        await client.inform(Note(held) if model == "note" else User(held, "old", 1))
        with psycopg.connect(pg_dsn) as holder:
            holder.execute(
                f"select 1 from {config.schema}.resources where object_id = %s for update", (held,)
            )
            start = time.monotonic()
            with trio.fail_after(10), pytest.raises(delta.LockTimeoutError) as caught:
                await client.inform_many([obj(i) for i in range(count)])
            waited = time.monotonic() - start
    assert caught.value.object_id == held
    assert 0.25 <= waited < 3.0, waited


def defaults(dsn: str) -> dict[str, str]:
    with psycopg.connect(dsn, prepare_threshold=None) as conn:
        return {name: str(conn.execute(f"show {name}").fetchone()[0]) for name in SETTINGS}  # type: ignore[index]


async def test_no_setting_is_left_on_the_poolers_server_connections(
    pg_dsn: str, pgbouncer: PgBouncer, config: delta.Config
) -> None:
    expected = defaults(pg_dsn)
    controller = RecordingController()
    async with delta.open_delta_client(
        pgbouncer.dsn, controllers_for(controller), config=pooled_config(config, pg_dsn)
    ) as client:
        await client.inform_many([User(f"u{i}@x", "n", 1) for i in range(300)])
        with trio.fail_after(20):
            while len(controller.worked) < 300:
                await trio.sleep(0.05)
    # Every server connection of the pooler at once: each client below holds
    # one for its open transaction.
    seen: list[dict[str, str]] = []
    with ExitStack() as stack:
        for _ in range(pgbouncer.pool_size):
            conn = stack.enter_context(psycopg.connect(pgbouncer.dsn, prepare_threshold=None))
            conn.execute("select 1")  # begins a transaction: the server connection stays
            seen.append({n: str(conn.execute(f"show {n}").fetchone()[0]) for n in SETTINGS})  # type: ignore[index]
    assert seen == [expected] * pgbouncer.pool_size
