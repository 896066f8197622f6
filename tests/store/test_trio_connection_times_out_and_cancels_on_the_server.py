"""The native driver's connection (``_store.trio_psycopg``) against real
Postgres: psycopg's timeouts and intervals are honoured, an interrupted
statement is cancelled on the server (its backend stops) and the connection
stays usable, and psycopg shapes it relies on are checked at import."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import tomllib
from collections.abc import AsyncIterator, Generator
from pathlib import Path

import psycopg
import pytest
import trio
from psycopg import pq

from tests.conftest import sql
from tests.helpers import wait_until
from trio_delta._store import trio_psycopg
from trio_delta._store.trio_psycopg import Ready, TrioConnection, Wait, connect, read_notifies


@pytest.fixture
async def conn(pg_dsn: str) -> AsyncIterator[TrioConnection]:
    conn = await connect(pg_dsn, autocommit=True)
    try:
        yield conn
    finally:
        await conn.close()


def backend_query(dsn: str, pid: int) -> tuple[str, str] | None:
    """(state, query) of backend ``pid``, None once it is gone."""
    rows = sql(dsn, "select state, query from pg_stat_activity where pid = %s", [pid])
    return rows[0] if rows else None  # type: ignore[return-value]


async def test_notifies_with_a_timeout_returns(conn: TrioConnection, pg_dsn: str) -> None:
    await conn.execute("listen trio_psycopg_test")
    start = trio.current_time()
    with trio.fail_after(5):  # it used to hang: the timeout was ignored
        got = [n async for n in conn.notifies(timeout=0.3)]
    assert got == []
    assert 0.25 <= trio.current_time() - start < 2.0

    sql(pg_dsn, "notify trio_psycopg_test, 'hello'")
    with trio.fail_after(5):
        got = [n async for n in conn.notifies(timeout=3.0, stop_after=1)]
    assert [n.payload for n in got] == ["hello"]
    assert (await (await conn.execute("select 1")).fetchone()) == (1,)


def woken(times: int) -> Generator[Wait, Ready, int]:
    """Waits to read (on an idle connection: nothing comes) until woken
    ``times`` times with nothing ready; returns how often it was woken."""
    count = 0
    while count < times:
        if (yield Wait.R) == Ready.NONE:
            count += 1
    return count


async def test_wait_wakes_the_generator_every_interval(conn: TrioConnection) -> None:
    start = trio.current_time()
    with trio.fail_after(5):
        assert await conn.wait(woken(3), interval=0.1) == 3
    assert 0.25 <= trio.current_time() - start < 2.0


async def test_wait_with_a_timeout_raises_and_leaves_the_connection_usable(
    conn: TrioConnection,
) -> None:
    start = trio.current_time()
    with trio.fail_after(5), pytest.raises(psycopg.OperationalError, match="timeout"):
        await conn.wait(woken(1_000_000), timeout=0.3)
    assert 0.25 <= trio.current_time() - start < 2.0
    assert (await (await conn.execute("select 2")).fetchone()) == (2,)


@pytest.mark.parametrize("statement", ["sleep", "lock"])
async def test_cancelled_statement_stops_on_the_server(
    conn: TrioConnection, pg_dsn: str, statement: str
) -> None:
    pid = conn.pgconn.backend_pid
    with psycopg.connect(pg_dsn, autocommit=True) as holder:
        holder.execute("select pg_advisory_lock(912873)")
        query = "select pg_sleep(30)" if statement == "sleep" else "select pg_advisory_lock(912873)"
        start = trio.current_time()
        with trio.move_on_after(0.5) as scope:
            await conn.execute(query)
        assert scope.cancelled_caught
        # The cancel request and reading the statement's end happen before
        # the cancellation goes on: nothing is left to the server.
        assert trio.current_time() - start < 2.5
        state = backend_query(pg_dsn, pid)
        assert state is not None
        assert state[0] == "idle", state
    assert not conn.closed
    assert conn.pgconn.transaction_status == pq.TransactionStatus.IDLE
    assert (await (await conn.execute("select 3")).fetchone()) == (3,)


async def test_cancelled_statement_in_a_transaction_leaves_it_failed_not_active(
    pg_dsn: str,
) -> None:
    conn = await connect(pg_dsn, autocommit=False)
    try:
        await conn.execute("select 1")
        assert conn.pgconn.transaction_status == pq.TransactionStatus.INTRANS
        with trio.move_on_after(0.3):
            await conn.execute("select pg_sleep(30)")
        assert conn.pgconn.transaction_status == pq.TransactionStatus.INERROR
        await conn.rollback()
        assert (await (await conn.execute("select 4")).fetchone()) == (4,)
    finally:
        await conn.close()


async def test_statement_that_ignores_cancel_gets_its_connection_closed(
    conn: TrioConnection, pg_dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(trio_psycopg, "_CANCEL_BOUND", 1.0)
    pid = conn.pgconn.backend_pid
    # Traps every cancel for 2.5 s, then ends by itself (the server is shared).
    stubborn = textwrap.dedent("""
        do $$
        declare until timestamptz := clock_timestamp() + interval '2.5 s';
        begin
            while clock_timestamp() < until loop
                begin
                    perform pg_sleep(0.05);
                exception when query_canceled then null;
                end;
            end loop;
        end $$""")
    start = trio.current_time()
    with trio.move_on_after(0.3):
        await conn.execute(stubborn)
    assert trio.current_time() - start < 2.5
    assert conn.closed
    # Closed, so the server ends the session once the block is done.
    await wait_until(lambda: backend_query(pg_dsn, pid) is None, within=10)


async def test_large_statement_is_sent_while_the_server_is_busy(conn: TrioConnection) -> None:
    # In a pipeline the large statement is sent while the server runs the
    # sleep and reads nothing: the send fills the socket buffers and waits
    # (for writability or readability: the server may be blocked writing).
    big = "x" * 8_000_000
    with trio.fail_after(10):
        async with conn.pipeline():
            slow = await conn.execute("select pg_sleep(0.3)")
            cur = await conn.execute("select length(%s::text)", [big])
        assert await slow.fetchone() == ("",)
        assert await cur.fetchone() == (8_000_000,)


async def test_notifications_wait_ends_cancelled_or_notified(
    conn: TrioConnection, pg_dsn: str
) -> None:
    await conn.execute("listen trio_psycopg_read")
    with trio.move_on_after(0.2) as scope:
        await read_notifies(conn)
    assert scope.cancelled_caught
    assert not conn.closed
    sql(pg_dsn, "notify trio_psycopg_read, 'one'")
    with trio.fail_after(5):
        got = await read_notifies(conn)
    assert [n.extra for n in got] == [b"one"]


async def test_autocommit_is_set_without_opening_a_transaction(pg_dsn: str) -> None:
    for autocommit, status in [
        (True, pq.TransactionStatus.IDLE),
        (False, pq.TransactionStatus.INTRANS),
    ]:
        conn = await connect(pg_dsn, autocommit=autocommit)
        try:
            assert conn.autocommit is autocommit
            assert conn.pgconn.transaction_status == pq.TransactionStatus.IDLE
            await conn.execute("select 1")
            assert conn.pgconn.transaction_status == status
        finally:
            await conn.close()


def run_python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        env=os.environ.copy(),
    )


def test_psycopg_whose_wait_changed_shape_is_refused_at_import() -> None:
    proc = run_python(
        textwrap.dedent("""
        import psycopg

        async def wait(self, gen, *, deadline=None):
            pass

        psycopg.AsyncConnection.wait = wait
        import trio_delta
    """)
    )
    assert proc.returncode != 0
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("ImportError: trio_delta needs psycopg >=3.2.1,<3.4"), last
    assert f"the installed psycopg {psycopg.__version__} has AsyncConnection.wait(" in last
    assert "deadline" in last


def test_importing_trio_delta_patches_nothing() -> None:
    proc = run_python(
        textwrap.dedent("""
        import asyncio
        import asyncio.events
        import sys

        import psycopg.waiting

        # asyncio keeps its C originals under these names.
        assert asyncio.get_running_loop is asyncio.events._c_get_running_loop
        lookups = ("get_running_loop", "get_event_loop")
        before = (asyncio.get_running_loop, asyncio.events.get_running_loop,
                  asyncio.get_event_loop, asyncio.events.get_event_loop,
                  [getattr(psycopg.waiting, name, None) for name in lookups])

        import trio_delta
        import trio_delta.cli

        after = (asyncio.get_running_loop, asyncio.events.get_running_loop,
                 asyncio.get_event_loop, asyncio.events.get_event_loop,
                 [getattr(psycopg.waiting, name, None) for name in lookups])
        assert after == before, (before, after)
        assert asyncio.get_running_loop is asyncio.events._c_get_running_loop
        assert "trio_asyncio" not in sys.modules
        assert "psycopg_pool" not in sys.modules
        print("untouched")
    """)
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "untouched"


def test_trio_asyncio_driver_patches_only_once_opened(pg_dsn: str) -> None:
    proc = run_python(
        textwrap.dedent(f"""
        import asyncio
        import asyncio.events
        import sys

        import psycopg.waiting
        import trio

        import trio_delta
        from trio_delta._store._bridge import open_bridge

        async def main():
            async with open_bridge("trio-asyncio") as bridge:
                async def query():
                    conn = await bridge.connect({pg_dsn!r}, autocommit=True)
                    try:
                        cur = await conn.execute("select 5")
                        return await cur.fetchone()
                    finally:
                        await conn.close()
                return await bridge.run(query)

        assert "trio_asyncio" not in sys.modules
        assert trio.run(main) == (5,)
        assert "trio_asyncio" in sys.modules
        assert asyncio.get_running_loop is not asyncio.events._c_get_running_loop
        for name in ("get_running_loop", "get_event_loop"):
            if hasattr(psycopg.waiting, name):
                assert getattr(psycopg.waiting, name) is getattr(asyncio, name)
        print("patched when used")
    """)
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "patched when used"


def test_supported_range_is_the_one_pinned() -> None:
    pyproject = tomllib.loads((Path(__file__).parents[2] / "pyproject.toml").read_text())
    pins = [dep for dep in pyproject["project"]["dependencies"] if dep.startswith("psycopg[")]
    assert pins == [f"psycopg[binary]{trio_psycopg.SUPPORTED}"]


def test_trio_asyncio_driver_that_cannot_load_says_why() -> None:
    # As on Python 3.14, where trio-asyncio 0.16 fails to import.
    proc = run_python(
        textwrap.dedent("""
        import sys

        import trio

        sys.modules["trio_asyncio"] = None  # its import now fails
        from trio_delta._store._bridge import open_bridge

        async def main():
            async with open_bridge("trio-asyncio"):
                pass

        try:
            trio.run(main)
        except ImportError as exc:
            print(exc)
    """)
    )
    assert proc.returncode == 0, proc.stderr
    expected = "the trio-asyncio driver cannot load trio_asyncio on Python 3."
    assert proc.stdout.startswith(expected), proc.stdout
    assert proc.stdout.rstrip().endswith("use the native driver")
