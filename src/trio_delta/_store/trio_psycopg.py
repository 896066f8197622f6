"""psycopg's ``AsyncConnection`` on Trio: the one module that relies on psycopg internals.

psycopg drives libpq through small generators that yield what they wait for
(:class:`~psycopg.waiting.Wait`) and are sent what became ready
(:class:`~psycopg.waiting.Ready`); ``AsyncConnection.wait()`` serves them on
asyncio. :class:`TrioConnection` overrides that one method to serve them
with Trio instead. What this leans on, beyond psycopg's documented API:

* ``AsyncConnection.wait(gen, interval[, timeout])`` is how every operation
  on an open connection waits, with that shape (3.2: no ``timeout``);
* the generators' protocol, and ``psycopg.generators.connect`` and
  ``notifies``;
* ``psycopg.errors._WaitTimeout``, which callers of ``wait(timeout=...)``
  (``notifies(timeout=...)`` from 3.3) catch to stop waiting;
* the asyncio loop look-up that ``psycopg.waiting`` binds at its import
  (for the trio-asyncio driver, see :func:`follow_patched_asyncio`).

All of it is checked when this module is imported: a psycopg that changed
any of it fails there, naming its version and the supported range, instead
of misbehaving later.
"""

from __future__ import annotations

import contextlib
import inspect
import math
import os
import select
from collections.abc import Generator
from typing import Any, TypeVar, cast

import psycopg
import psycopg.errors
import trio
from psycopg import pq

from .._logs import get_logger
from .._util import single_exception

# The range pyproject.toml pins and `nox -s psycopg` tests.
SUPPORTED = ">=3.2.1,<3.4"

log = get_logger("trio_delta.store")


def _unsupported(what: str) -> ImportError:
    return ImportError(
        f"trio_delta needs psycopg {SUPPORTED}, and the installed psycopg "
        f"{psycopg.__version__} {what}; install a supported one: "
        f"pip install 'psycopg[binary]{SUPPORTED}'"
    )


try:
    import psycopg.waiting
    from psycopg.conninfo import conninfo_to_dict
    from psycopg.generators import connect as _connect_gen
    from psycopg.generators import notifies as _notifies_gen
    from psycopg.waiting import Ready, Wait
except ImportError as exc:
    raise _unsupported(f"lacks what trio_delta uses ({exc})") from exc

_WAIT_PARAMS = list(inspect.signature(psycopg.AsyncConnection.wait).parameters)
if _WAIT_PARAMS not in (["self", "gen", "interval"], ["self", "gen", "interval", "timeout"]):
    raise _unsupported(
        f"has AsyncConnection.wait({', '.join(_WAIT_PARAMS)}), not "
        "wait(self, gen, interval[, timeout])"
    )


class _OwnWaitTimeout(psycopg.OperationalError):
    """Raised on psycopg 3.2, which has no timeout to wait() (nor its
    exception) but whose wait() a caller of ours may still give one."""


_WaitTimeout: type[psycopg.OperationalError] = _OwnWaitTimeout
if "timeout" in _WAIT_PARAMS:
    _found = getattr(psycopg.errors, "_WaitTimeout", None)
    if not (isinstance(_found, type) and issubclass(_found, psycopg.OperationalError)):
        raise _unsupported("has wait(timeout=...) but no errors._WaitTimeout to signal it")
    _WaitTimeout = _found


# Names psycopg.waiting imported from asyncio: get_event_loop (3.2, 3.3.0) or
# get_running_loop (later 3.3).
_LOOP_LOOKUPS = tuple(
    name for name in ("get_running_loop", "get_event_loop") if hasattr(psycopg.waiting, name)
)
if not _LOOP_LOOKUPS:
    raise _unsupported("has no asyncio loop look-up in psycopg.waiting")

R = TypeVar("R")
_Gen = Generator[Wait, Ready, Any]

# An interrupted statement is cancelled on the server, its end read, within
# _CANCEL_BOUND seconds, else its connection is closed. The cancel request
# is repeated every _CANCEL_AGAIN seconds: one that reaches the server
# before the statement starts is dropped there.
_CANCEL_AGAIN = 1.0
_CANCEL_BOUND = 5.0


#: Threads that open and cancel connections are limited apart from Trio's
#: default limiter, which user work shares: works blocked in 40 threads
#: would otherwise keep the store from opening any connection (even the one
#: that writes outcomes at stop). A connection is opened per pool slot and
#: lane, a few dozen at most, so this bounds nothing in practice.
_DRIVER_THREADS: trio.lowlevel.RunVar[trio.CapacityLimiter] = trio.lowlevel.RunVar(
    "trio_delta_driver_threads"
)


def _driver_threads() -> trio.CapacityLimiter:
    try:
        return _DRIVER_THREADS.get()
    except LookupError:
        limiter = trio.CapacityLimiter(64)
        _DRIVER_THREADS.set(limiter)
        return limiter


def ready_now(fileno: int, wait: int) -> Ready:
    """What of ``wait`` the socket is ready for right now (poll(), so no
    FD_SETSIZE limit). An error or hang-up reads as ready: libpq then
    finds it and reports it."""
    poller = select.poll()
    poller.register(
        fileno,
        (select.POLLIN if wait & Wait.R else 0) | (select.POLLOUT if wait & Wait.W else 0),
    )
    ready = 0
    for _, events in poller.poll(0):
        if events & (select.POLLIN | select.POLLERR | select.POLLHUP):
            ready |= Ready.R
        if events & (select.POLLOUT | select.POLLERR | select.POLLHUP):
            ready |= Ready.W
    return Ready(ready)


async def _wait_socket(fileno: int, wait: int) -> Ready:
    """Block until the socket is ready for some of ``wait``."""
    if wait & Wait.W:
        # Nearly always writable at once: poll, then only a checkpoint.
        if ready := ready_now(fileno, wait):
            await trio.lowlevel.checkpoint()
            return ready
        if not wait & Wait.R:
            await trio.lowlevel.wait_writable(fileno)
            return Ready.W
        # Both (pipelines, large sends): the server may be blocked writing
        # to us until we read, so wait for either, never just one.
        try:
            async with trio.open_nursery() as nursery:

                async def until(waiter: Any) -> None:
                    await waiter(fileno)
                    nursery.cancel_scope.cancel()

                nursery.start_soon(until, trio.lowlevel.wait_readable)
                nursery.start_soon(until, trio.lowlevel.wait_writable)
        except BaseExceptionGroup as group:
            raise single_exception(group) from None
        return ready_now(fileno, wait)
    await trio.lowlevel.wait_readable(fileno)
    return Ready.R


class _Exchange:
    """One psycopg generator being served on its connection's socket;
    ``live`` while it has neither returned nor raised."""

    def __init__(self, gen: _Gen, fileno: int, wait: Wait) -> None:
        self.gen = gen
        self.fileno = fileno
        self.wait = wait
        self.live = True

    async def run(self, interval: float | None = None, deadline: float | None = None) -> Any:
        """Serve the generator to its end. Every ``interval`` seconds without
        readiness it is sent what is ready then (as psycopg's own waits do);
        past ``deadline`` (Trio's clock) ``_WaitTimeout`` is raised."""
        while True:
            wake_at = deadline
            if interval is not None:
                wake_at = trio.current_time() + interval
                if deadline is not None:
                    wake_at = min(wake_at, deadline)
            try:
                if wake_at is None:
                    ready = await _wait_socket(self.fileno, self.wait)
                else:
                    ready = Ready.NONE
                    with trio.move_on_at(wake_at):
                        ready = await _wait_socket(self.fileno, self.wait)
                    ready = ready or ready_now(self.fileno, self.wait)
            except OSError as exc:
                raise psycopg.OperationalError("connection socket closed") from exc
            try:
                self.wait = self.gen.send(ready)
            except StopIteration as done:
                self.live = False
                return done.value
            except BaseException:
                self.live = False
                raise
            if deadline is not None and trio.current_time() >= deadline:
                raise _WaitTimeout("wait timeout expired")


class _TaskLock:
    """What psycopg's ``async with conn.lock`` needs, on Trio.

    psycopg serializes a connection's operations with an ``asyncio.Lock``,
    which needs an asyncio loop as soon as two tasks contend. An
    application's connection (``trio_delta.connect``) may well be shared by
    tasks, so it gets this instead. Taking it free costs no checkpoint: the
    statement it guards checkpoints anyway, and a lock per statement that
    yielded to the scheduler cost every statement a scheduler pass.
    """

    def __init__(self) -> None:
        self._held = False
        self._lot = trio.lowlevel.ParkingLot()

    def locked(self) -> bool:
        return self._held

    async def __aenter__(self) -> None:
        while self._held:
            await self._lot.park()
        self._held = True

    async def __aexit__(self, *exc_info: object) -> None:
        self._held = False
        self._lot.unpark()


class TrioConnection(psycopg.AsyncConnection[Any]):
    """An ``AsyncConnection`` whose waiting is done by Trio, and whose
    operations are serialized with a Trio lock: it may be shared by tasks."""

    def __init__(self, pgconn: pq.abc.PGconn) -> None:
        super().__init__(pgconn)
        self.lock = cast(Any, _TaskLock())

    async def wait(  # 3.2 has no timeout
        self,
        gen: Generator[Any, Any, R],
        interval: float | None = None,
        timeout: float | None = None,  # noqa: ASYNC109 - psycopg's signature
    ) -> R:
        """Serve ``gen`` on the socket with Trio.

        ``interval``: as psycopg's, the generator is woken that often even
        if nothing is ready (psycopg 3.2's ``notifies(timeout=...)`` ends so).
        Its default is none: Trio delivers cancellation and Ctrl-C to a
        waiting task itself, so psycopg's 0.1 s polling is not needed.
        ``timeout``: as psycopg's, ``_WaitTimeout`` once it has passed.

        Interrupted mid-statement (cancelled, Ctrl-C, timed out), the
        statement is cancelled on the server and its end read, so the
        backend stops and the connection stays usable; if that takes longer
        than a few seconds, the connection is closed.
        """
        try:
            wait = next(gen)
        except StopIteration as done:
            result: R = done.value
            return result
        deadline = None if timeout is None else trio.current_time() + timeout
        exchange = _Exchange(gen, self.pgconn.socket, wait)
        try:
            result = await exchange.run(interval, deadline)
        except BaseException:
            if exchange.live and self.pgconn.transaction_status == pq.TransactionStatus.ACTIVE:
                await self._cancel_on_server(exchange)
            if exchange.live:
                # Left half-way with nothing to cancel (a pipeline's closing
                # sync, say): closed now, not when collected, when its
                # cleanup would run on a connection long since moved on.
                with contextlib.suppress(Exception):
                    gen.close()
            raise
        return result

    async def _cancel_on_server(self, exchange: _Exchange) -> None:
        """Cancel the running statement and read its end; close the
        connection if that fails or does not happen in time."""
        cancel = self.pgconn.get_cancel()  # on this thread: it reads the connection
        failure: BaseException | None = None
        with trio.CancelScope(shield=True, deadline=trio.current_time() + _CANCEL_BOUND):
            try:
                while exchange.live:
                    # PQcancel blocks (a connection of its own): in a thread.
                    await trio.to_thread.run_sync(
                        cancel.cancel, abandon_on_cancel=True, limiter=_driver_threads()
                    )
                    with trio.move_on_after(_CANCEL_AGAIN):
                        await exchange.run()
            except (psycopg.Error, OSError) as exc:
                failure = exc  # QueryCanceled, as asked, or the statement's own end
        if self.pgconn.transaction_status == pq.TransactionStatus.ACTIVE:
            log.warning(
                "an interrupted statement did not end when cancelled (%s): closing its connection",
                failure or "no answer in time",
            )
            self.pgconn.finish()  # `closed` reads the libpq status: now true


def _connect_timeout(conninfo: str) -> float | None:
    """The whole connect's bound: libpq's ``connect_timeout`` for each host."""
    params = conninfo_to_dict(conninfo)
    value = params.get("connect_timeout") or os.environ.get("PGCONNECT_TIMEOUT")
    try:
        seconds = float(value) if value else 0.0
    except ValueError:
        return None  # libpq itself refuses it, with its own message
    if seconds <= 0:
        return None
    hosts = str(params.get("host") or params.get("hostaddr") or "").count(",") + 1
    return max(seconds, 2.0) * hosts  # libpq waits at least 2 s per host


async def connect(conninfo: str, *, autocommit: bool) -> TrioConnection:
    """Open a connection without blocking: libpq's non-blocking connect,
    its socket waited on by Trio, bounded by ``connect_timeout``.

    Not ``PQconnectdb`` in a thread: psycopg holds the GIL while libpq
    connects, so a server that accepted the connection but never answered
    froze the whole process, signal handlers included, for the timeout.
    """
    gen = _connect_gen(conninfo)
    timeout = _connect_timeout(conninfo)
    try:
        with trio.fail_after(timeout if timeout is not None else math.inf):
            fileno, wait = next(gen)
            while True:
                ready = await _wait_socket(fileno, wait)
                fileno, wait = gen.send(ready)
    except StopIteration as done:
        pgconn: pq.abc.PGconn = done.value
    except trio.TooSlowError:
        gen.close()  # drops the half-open connection
        raise psycopg.OperationalError(
            f"connection failed: timeout expired after {timeout:g}s"
        ) from None
    except BaseException:
        gen.close()
        raise
    conn = TrioConnection(pgconn)
    # Only checks that no transaction is open: no round trip.
    await conn.set_autocommit(autocommit)
    return conn


async def read_notifies(conn: psycopg.AsyncConnection[Any]) -> list[pq.PGnotify]:
    """Wait for notifications on ``conn`` (either driver) and return those
    that have arrived. Cancelling this leaves the connection usable."""
    notifies: list[pq.PGnotify] = await conn.wait(_notifies_gen(conn.pgconn))
    return notifies


def follow_patched_asyncio() -> None:
    """Point psycopg.waiting's loop look-up at asyncio's current one.

    psycopg.waiting imported it from asyncio by name, at its own import;
    trio-asyncio, imported later, replaces asyncio's with one that also sees
    its loop. Called by the trio-asyncio driver after importing trio_asyncio.
    """
    import asyncio

    for name in _LOOP_LOOKUPS:
        setattr(psycopg.waiting, name, getattr(asyncio, name))
