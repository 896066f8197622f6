"""The store's database driver: psycopg serving Trio.

psycopg 3 speaks asyncio, not Trio. Two drivers make it serve Trio:

``native`` (the default)
    psycopg's ``AsyncConnection`` with its waiting done by Trio
    (:mod:`.trio_psycopg`, the one module that relies on psycopg's
    internals), so queries run straight on Trio: no second event loop, no
    hop between loops. A small Trio connection pool replaces psycopg_pool,
    which is asyncio-only. Measured on a trivial query: about 0.14 ms a
    round trip, against 0.68 ms through trio-asyncio and 0.22 ms with
    synchronous psycopg.

``trio-asyncio``
    psycopg's own asyncio code runs on a trio-asyncio loop opened for the
    store's lifetime, with psycopg_pool; every store call crosses over once.
    The design's original choice, kept as a fallback for anything the native
    wait does not cover. trio_asyncio (which patches asyncio process-wide
    when imported) and psycopg_pool are imported only when this driver is
    opened: importing trio_delta patches nothing.

Both expose the same small surface to :mod:`.postgres`: ``run`` (await a
coroutine function in the right world), ``connect``, and a pool with
``connection()``, ``getconn()``, ``putconn()``, ``open()`` and ``close()``.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import AsyncGenerator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, Literal, ParamSpec, Protocol, TypeVar, cast

import msgspec
import psycopg
import trio
from psycopg import pq
from psycopg.types.json import set_json_loads

from .._util import leaf_exceptions
from .trio_psycopg import TrioConnection, Wait, follow_patched_asyncio, ready_now
from .trio_psycopg import connect as native_connect

P = ParamSpec("P")
R = TypeVar("R")
Driver = Literal["native", "trio-asyncio"]
DRIVERS: tuple[Driver, ...] = ("native", "trio-asyncio")
Conn = psycopg.AsyncConnection[Any]
#: Session settings for a new pooled connection.
Configure = Callable[[Conn], Awaitable[None]]


def _fast_json(conn: Conn) -> Conn:
    # jsonb columns (metadata, errors) decode with msgspec, not the json module.
    set_json_loads(msgspec.json.decode, conn)
    return conn


# -- the native driver's pool ----------------------------------------------


def _still_connected(conn: Conn) -> bool:
    """Whether an idle connection is still usable, without a round trip.

    Pool connections never LISTEN, so an idle one has nothing to read; if
    its socket is readable, the server has said goodbye (a FATAL message,
    then end of stream: a database restart) and the connection is dropped.
    """
    if conn.closed or conn.pgconn.status != pq.ConnStatus.OK:
        return False
    return not ready_now(conn.pgconn.socket, Wait.R)


class TrioPool:
    """A small connection pool on Trio: at most ``max_size`` autocommit
    connections, opened on demand, reused while healthy and idle (a
    connection returned inside a transaction is closed, not reused)."""

    def __init__(self, conninfo: str, *, max_size: int, configure: Configure | None = None) -> None:
        self._conninfo = conninfo
        self._configure = configure
        self._idle: list[TrioConnection] = []
        self._slots = trio.Semaphore(max_size)
        self._max_size = max_size
        self._closed = False

    async def open(self, wait: bool = False) -> None:
        await trio.lowlevel.checkpoint()

    def in_use(self) -> int:
        """Connections handed out and not yet returned."""
        return self._max_size - self._slots.value

    async def getconn(self) -> TrioConnection:
        if self._closed:
            raise psycopg.OperationalError("the connection pool is closed")
        await self._slots.acquire()
        try:
            while self._idle:
                conn = self._idle.pop()
                if _still_connected(conn):
                    return conn
                await conn.close()
            conn = await native_connect(self._conninfo, autocommit=True)
            try:
                if self._configure is not None:
                    await self._configure(conn)
            except BaseException:
                await conn.close()
                raise
            return _fast_json(conn)  # type: ignore[return-value]
        except BaseException:
            self._slots.release()
            raise

    async def putconn(self, conn: TrioConnection) -> None:
        try:
            healthy = (
                not self._closed
                and not conn.closed
                and conn.pgconn.transaction_status == pq.TransactionStatus.IDLE
            )
            if healthy:
                self._idle.append(conn)
            else:
                await conn.close()
        finally:
            self._slots.release()

    @asynccontextmanager
    async def connection(self) -> AsyncGenerator[TrioConnection, None]:
        conn = await self.getconn()
        try:
            yield conn
        finally:
            with trio.CancelScope(shield=True):
                await self.putconn(conn)

    async def close(self) -> None:
        self._closed = True
        idle, self._idle = self._idle, []
        for conn in idle:
            await conn.close()


# -- the common surface --------------------------------------------------------


class Pool(Protocol):
    async def open(self, wait: bool = ...) -> None: ...

    async def getconn(self) -> Any: ...

    async def putconn(self, conn: Any) -> None: ...

    def connection(self) -> contextlib.AbstractAsyncContextManager[Any]: ...

    async def close(self) -> None: ...


def pool_in_use(pool: Pool) -> int:
    """Connections of ``pool`` handed out and not yet returned."""
    if isinstance(pool, TrioPool):
        return pool.in_use()
    stats: dict[str, int] = cast(Any, pool).get_stats()  # psycopg_pool's
    return stats.get("pool_size", 0) - stats.get("pool_available", 0)


class Bridge:
    """Runs the store's coroutine functions with the chosen driver."""

    def __init__(self, driver: Driver) -> None:
        self.driver = driver

    async def run(self, fn: Callable[P, Awaitable[R]], *args: P.args, **kwargs: P.kwargs) -> R:
        """Await ``fn(*args, **kwargs)``: directly on the native driver, on
        the asyncio side with trio-asyncio (Trio cancellation then cancels
        the asyncio task, and psycopg cancels the query)."""
        if self.driver == "native":
            return await fn(*args, **kwargs)

        async def call() -> R:
            return await fn(*args, **kwargs)

        result: R = await _trio_asyncio().aio_as_trio(call)()
        return result

    async def connect(self, conninfo: str, *, autocommit: bool) -> Conn:
        """Open one connection (call through :meth:`run`)."""
        if self.driver == "native":
            return _fast_json(await native_connect(conninfo, autocommit=autocommit))
        return _fast_json(await psycopg.AsyncConnection.connect(conninfo, autocommit=autocommit))

    def pool(self, conninfo: str, *, max_size: int, configure: Configure | None = None) -> Pool:
        """A pool of autocommit connections; ``configure`` runs once on each
        new connection (session settings), on the driver's side."""
        if self.driver == "native":
            return TrioPool(conninfo, max_size=max_size, configure=configure)
        from psycopg_pool import AsyncConnectionPool  # asyncio-only: this driver's alone

        async def configure_async(conn: Conn) -> None:
            _fast_json(conn)
            if configure is not None:
                await configure(conn)
            await asyncio.sleep(0)

        pool: AsyncConnectionPool[Any] = AsyncConnectionPool(
            conninfo,
            min_size=1,
            max_size=max_size,
            open=False,
            name="trio_delta",
            configure=configure_async,
            kwargs={"autocommit": True},
        )
        return pool


def _trio_asyncio() -> Any:
    """trio_asyncio, imported on first use of its driver: importing it
    replaces asyncio's loop look-ups process-wide, which psycopg must then
    follow."""
    try:
        import trio_asyncio
    except (ImportError, AttributeError) as exc:
        # trio-asyncio 0.16 subclasses asyncio.AbstractChildWatcher, gone in
        # Python 3.14: say so, not just the AttributeError.
        raise ImportError(
            f"the trio-asyncio driver cannot load trio_asyncio on Python "
            f"{sys.version.split()[0]} ({type(exc).__name__}: {exc}); use the native driver"
        ) from exc
    follow_patched_asyncio()
    return trio_asyncio


def _sole_exception(group: BaseExceptionGroup[BaseException]) -> BaseException | None:
    leaves = leaf_exceptions(group)
    return leaves[0] if len(leaves) == 1 else None


@asynccontextmanager
async def open_asyncio_loop() -> AsyncGenerator[None, None]:
    """Run the block inside a trio-asyncio loop (the one already running,
    if any), where asyncio code can be awaited with ``aio_as_trio``.

    trio-asyncio's loop runs in nurseries of its own, which would wrap
    whatever the block raises in exception groups; a lone exception is
    re-raised as itself so callers see what their own code raised.
    """
    trio_asyncio = _trio_asyncio()
    if trio_asyncio.current_loop.get() is not None:
        yield
        return
    try:
        async with trio_asyncio.open_loop():
            yield
    except BaseExceptionGroup as group:
        sole = _sole_exception(group)
        if sole is None:
            raise
        raise sole from None


@asynccontextmanager
async def open_bridge(driver: Driver = "native") -> AsyncGenerator[Bridge, None]:
    """Make the driver ready for the duration of the block."""
    if driver == "native":
        yield Bridge(driver)
        return
    async with open_asyncio_loop():
        yield Bridge(driver)
