"""The only module that deals with psycopg's asyncio side.

psycopg 3 speaks asyncio, not Trio. Two drivers make it serve Trio:

``native`` (the default)
    psycopg's ``AsyncConnection`` drives libpq through small generators and
    asks its ``wait()`` method to block until the socket is ready. We
    override that one method to wait with Trio (``wait_readable`` /
    ``wait_writable``), so queries run straight on Trio: no second event loop,
    no hop between loops. Connections are opened by libpq in a worker thread
    (``PQconnectdb``: DNS, TLS, multiple hosts all as libpq does them), and a
    small Trio connection pool replaces psycopg_pool, which is asyncio-only.
    Measured on a trivial query: about 0.14 ms a round trip, against 0.68 ms
    through trio-asyncio and 0.22 ms with synchronous psycopg.

``trio-asyncio``
    psycopg's own asyncio code runs on a trio-asyncio loop opened for the
    store's lifetime, with psycopg_pool; every store call crosses over once.
    The design's original choice, kept as a fallback for anything the native
    wait does not cover.

Both expose the same small surface to :mod:`.postgres`: ``run`` (await a
coroutine function in the right world), ``connect``, and a pool with
``connection()``, ``getconn()``, ``putconn()``, ``open()`` and ``close()``.
"""

from __future__ import annotations

# trio_asyncio must be imported before psycopg's modules are used: it replaces
# asyncio.get_running_loop with a version that knows its loop.
import trio_asyncio  # pyright: ignore[reportMissingTypeStubs]  # isort: skip

import asyncio
import contextlib
import select
from collections.abc import AsyncGenerator, Awaitable, Callable, Generator
from contextlib import asynccontextmanager
from typing import Any, Literal, ParamSpec, Protocol, TypeVar

import msgspec
import psycopg
import psycopg.waiting
import trio
from psycopg import pq
from psycopg.types.json import set_json_loads
from psycopg.waiting import Ready, Wait
from psycopg_pool import AsyncConnectionPool

# psycopg.waiting did `from asyncio import get_running_loop` when it was first
# imported, which may be before trio_asyncio patched asyncio (a user who
# imports psycopg first). That original C function does not see trio-asyncio's
# loop and fails with "no running event loop"; point it at the patched one.
psycopg.waiting.get_running_loop = asyncio.get_running_loop  # type: ignore[attr-defined]

P = ParamSpec("P")
R = TypeVar("R")
Driver = Literal["native", "trio-asyncio"]
DRIVERS: tuple[Driver, ...] = ("native", "trio-asyncio")
Conn = psycopg.AsyncConnection[Any]


def _fast_json(conn: Conn) -> Conn:
    # jsonb columns (metadata, errors) decode with msgspec, not the json module.
    set_json_loads(msgspec.json.decode, conn)
    return conn


# -- the native driver --------------------------------------------------------


class TrioConnection(psycopg.AsyncConnection[Any]):
    """An ``AsyncConnection`` whose waiting is done by Trio.

    Only ever used by one task at a time (callers serialize), which keeps
    psycopg's internal asyncio lock uncontended: an uncontended
    ``asyncio.Lock`` never touches an event loop.
    """

    async def wait(  # type: ignore[override]
        self,
        gen: Generator[Any, Any, R],
        interval: float = 0.0,
        timeout: float | None = None,  # noqa: ASYNC109 - psycopg's signature
    ) -> R:
        fileno = self.pgconn.socket
        try:
            state = next(gen)
            while True:
                if state & Wait.W:
                    await trio.lowlevel.wait_writable(fileno)
                    ready = Ready.W
                    if state & Wait.R and select.select([fileno], [], [], 0)[0]:
                        ready |= Ready.R
                else:
                    await trio.lowlevel.wait_readable(fileno)
                    ready = Ready.R
                state = gen.send(ready)
        except StopIteration as done:
            result: R = done.value
            return result
        except BaseException:
            # Cancelled (or failed) mid-protocol: the connection's state is
            # unknown, so it is closed; the server ends the session.
            if not self.closed and self.pgconn.transaction_status == pq.TransactionStatus.ACTIVE:
                self.pgconn.finish()
                self._closed = True
            raise


#: Threads that open connections are limited apart from Trio's default
#: limiter, which user work shares: works blocked in 40 threads would
#: otherwise keep the store from opening any connection (even the one that
#: writes outcomes at stop). A connection is opened per pool slot and lane,
#: a few dozen at most, so this bounds nothing in practice.
_CONNECT_THREADS: trio.lowlevel.RunVar[trio.CapacityLimiter] = trio.lowlevel.RunVar(
    "trio_delta_connect_threads")


def _connect_threads() -> trio.CapacityLimiter:
    try:
        return _CONNECT_THREADS.get()
    except LookupError:
        limiter = trio.CapacityLimiter(64)
        _CONNECT_THREADS.set(limiter)
        return limiter


async def native_connect(conninfo: str, *, autocommit: bool) -> TrioConnection:
    """Open a connection with libpq in a worker thread, then hand it to Trio."""
    pgconn = await trio.to_thread.run_sync(pq.PGconn.connect, conninfo.encode(),
                                           abandon_on_cancel=True, limiter=_connect_threads())
    if pgconn.status != pq.ConnStatus.OK:
        message = pgconn.get_error_message()
        pgconn.finish()
        raise psycopg.OperationalError(message)
    pgconn.nonblocking = 1
    conn = TrioConnection(pgconn)
    conn._autocommit = autocommit  # pyright: ignore[reportPrivateUsage]  # no server round trip needed
    return conn  # pyright: ignore[reportReturnType]


def _still_connected(conn: Conn) -> bool:
    """Whether an idle connection is still usable, without a round trip.

    Pool connections never LISTEN, so an idle one has nothing to read; if
    its socket is readable, the server has said goodbye (a FATAL message,
    then end of stream: a database restart) and the connection is dropped.
    """
    if conn.closed or conn.pgconn.status != pq.ConnStatus.OK:
        return False
    return not select.select([conn.pgconn.socket], [], [], 0)[0]


class TrioPool:
    """A small connection pool on Trio: at most ``max_size`` autocommit
    connections, opened on demand, reused while healthy and idle (a
    connection returned inside a transaction is closed, not reused)."""

    def __init__(self, conninfo: str, *, max_size: int) -> None:
        self._conninfo = conninfo
        self._idle: list[TrioConnection] = []
        self._slots = trio.Semaphore(max_size)
        self._closed = False

    async def open(self, wait: bool = False) -> None:
        await trio.lowlevel.checkpoint()

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
            return _fast_json(await native_connect(self._conninfo, autocommit=True))  # type: ignore[return-value]
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

        result: R = await trio_asyncio.aio_as_trio(call)()  # pyright: ignore[reportUnknownMemberType,reportUnknownVariableType]
        return result  # pyright: ignore[reportUnknownVariableType]

    async def connect(self, conninfo: str, *, autocommit: bool) -> Conn:
        """Open one connection (call through :meth:`run`)."""
        if self.driver == "native":
            return _fast_json(await native_connect(conninfo, autocommit=autocommit))
        return _fast_json(await psycopg.AsyncConnection.connect(conninfo, autocommit=autocommit))

    def pool(self, conninfo: str, *, max_size: int) -> Pool:
        if self.driver == "native":
            return TrioPool(conninfo, max_size=max_size)
        pool: AsyncConnectionPool[Any] = AsyncConnectionPool(
            conninfo, min_size=1, max_size=max_size, open=False, name="trio_delta",
            configure=_configure_async, kwargs={"autocommit": True},
        )
        return pool


async def _configure_async(conn: Conn) -> None:
    _fast_json(conn)
    await asyncio.sleep(0)


def _sole_exception(group: BaseExceptionGroup[BaseException]) -> BaseException | None:
    leaves: list[BaseException] = []
    pending: list[BaseException] = [group]
    while pending:
        exc = pending.pop()
        if isinstance(exc, BaseExceptionGroup):
            pending.extend(exc.exceptions)  # pyright: ignore[reportUnknownMemberType,reportUnknownArgumentType]
        else:
            leaves.append(exc)
    return leaves[0] if len(leaves) == 1 else None


@asynccontextmanager
async def open_bridge(driver: Driver = "native") -> AsyncGenerator[Bridge, None]:
    """Make the driver ready for the duration of the block.

    trio-asyncio's loop runs in nurseries of its own, which would wrap
    whatever the block raises in exception groups; a lone exception is
    re-raised as itself so callers see what their own code raised.
    """
    if driver == "native":
        yield Bridge(driver)
        return
    try:
        async with trio_asyncio.open_loop():  # pyright: ignore[reportUnknownMemberType]
            yield Bridge(driver)
    except BaseExceptionGroup as group:
        sole = _sole_exception(group)
        if sole is None:
            raise
        raise sole from None
