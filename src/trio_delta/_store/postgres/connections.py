"""The Postgres store's connections: the pool, the lanes, the bridge crossing.

Hot paths (claims, outcomes, informer batches, the leader) each own a
dedicated connection, a *lane*, so they never wait on a pool checkout;
everything else (``inform``, look-ups, user transactions) borrows from a
pool. Every call crosses the bridge once, and driver errors come out as
:class:`StoreError`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, TypeVar

import psycopg
import trio
from psycopg import pq
from psycopg.types.json import set_json_loads

from ..._errors import StoreError
from ..._logs import get_logger
from .._bridge import (
    Bridge,
    Pool,
    _still_connected,  # pyright: ignore[reportPrivateUsage]  # the pool's own check, shared
    pool_in_use,
)
from ..dsn import describe_dsn, redact
from ..queries import NamedQuery, Queries
from .columns import can_send_packed, load_json
from .runners import BEGIN, COMMIT, ROLLBACK, returns_rows

log = get_logger("trio_delta.store")
R = TypeVar("R")
Conn = psycopg.AsyncConnection[Any]


#: Lanes whose commits need not wait for the WAL flush (unless
#: ``Config.async_commit`` is off). A claim or outcome lost in a database
#: crash is safe to lose: the row stays claimable, or pending until the
#: rescuer retries it (at-least-once either way). Informs are never on such
#: a lane: an inform reported as done must be durable.
ASYNC_COMMIT_LANES = frozenset({"claim", "claim-2", "complete", "leader"})
#: The fetcher may have two claims in flight (see ``_engine/fetcher.py``).
CLAIM_LANES = ("claim", "claim-2")


def notify_channel(schema: str) -> str:
    """The NOTIFY channel of a schema; schemas are at most 40 characters."""
    return f"trio_delta_{schema}"


def store_error(exc: BaseException, what: str) -> StoreError:
    if isinstance(exc, psycopg.errors.LockNotAvailable):
        # The server refused the statement: it was rolled back, for sure.
        return StoreError(
            f"{what} failed: a lock another transaction holds was not "
            "released within the lock timeout",
            maybe_applied=False,
        )
    sqlstate: str | None = getattr(exc, "sqlstate", None)
    # An OperationalError may be a connection lost as the reply was due:
    # then nobody can tell. A deadlock or serialization failure (class
    # 40) and a cancelled statement (57014) were rolled back, for sure.
    maybe_applied = isinstance(exc, psycopg.OperationalError) and not (
        sqlstate is not None and (sqlstate.startswith("40") or sqlstate == "57014")
    )
    return StoreError(
        f"{what} failed: {redact(str(exc)).strip()}",
        maybe_applied=maybe_applied,
        sqlstate=sqlstate,
    )


def lock_timeout_ms(seconds: float | None) -> str:
    """``lock_timeout`` as Postgres takes it: milliseconds, ``0`` for none."""
    if seconds is None:
        return "0"
    return str(min(max(round(seconds * 1000), 1), 2**31 - 1))


def idle_and_healthy(conn: Conn) -> bool:
    """Whether a connection that just failed a statement can take the next
    one: the server refused the statement (a lock timeout, a constraint)
    but the session itself is fine, outside any transaction."""
    return (
        not conn.closed
        and conn.pgconn.status == pq.ConnStatus.OK
        and conn.pgconn.transaction_status == pq.TransactionStatus.IDLE
    )


def _never_ran(exc: psycopg.Error) -> bool:
    """The server closed the session as idle just as the statement was sent:
    it ended the session without reading the statement, so running it again
    on a new connection cannot apply it twice."""
    return exc.sqlstate == "57P05"  # idle_session_timeout


def lane_settings(name: str, *, async_commit: bool = True) -> list[tuple[str, str]]:
    """The settings of the lane ``name``, as (parameter, value) pairs."""
    settings = [
        # Statements are prepared after a few runs; a generic plan cannot
        # see the batch's array sizes or the claim's limit and picked scans
        # costing several times the custom plan.
        ("plan_cache_mode", "force_custom_plan"),
        # JIT compiling pays off for long analytic queries; for these short
        # statements it cost up to 300 ms when a cost estimate crossed
        # jit_above_cost (large tables, disabled plan shapes).
        ("jit", "off"),
    ]
    if async_commit and name in ASYNC_COMMIT_LANES:
        settings.append(("synchronous_commit", "off"))
    if name == "complete":
        # The outcome statement joins a batch of n outcomes to their n rows.
        # Before autovacuum has analysed a new table, the planner guessed
        # the rows' side at one row and chose a nested loop rescanning the
        # batch for each row: n x n (400 x 400 took 34 ms instead of 7 ms).
        # With nested loops off, the join is a hash join over the rows found
        # by primary key, linear whatever the estimates.
        settings.append(("enable_nestloop", "off"))
        # For the same reason it once scanned the whole table for the rows
        # to lock: 400 ids in a literal array looked like most of a table
        # without statistics. Every row is found by primary key.
        settings.append(("enable_seqscan", "off"))
    return settings


#: What trio_delta's own sessions set besides their lane's settings. Times
#: are read in UTC: psycopg returns a timestamptz in the session's zone, and
#: for a named zone (Debian's default ``Etc/UTC`` among them) each value is
#: converted through zoneinfo, 0.5 us more than for ``UTC`` (which maps to
#: ``datetime.timezone.utc``): a claimed row has four or five. Only sessions
#: get it: applied per transaction instead, it would turn a one-statement
#: call without settings into three round trips. The instants are the same
#: in any zone; none of trio_delta's statements depend on the zone.
SESSION_SETTINGS = (("TimeZone", "UTC"),)


def settings_params(settings: Sequence[tuple[str, str]], *, local: bool) -> dict[str, Any]:
    """The parameters of the ``apply_settings`` query for ``settings``
    (and, with ``local``, of ``begin_with_settings``)."""
    return {
        "names": [name for name, _ in settings],
        "values": [value for _, value in settings],
        "local": local,
    }


async def with_local_settings(
    conn: Conn,
    begin: NamedQuery,
    params: dict[str, Any] | None,
    fn: Callable[[Conn], Awaitable[R]],
) -> R:
    """``fn(conn)`` in a transaction that first applies settings to itself
    only (``begin``, the ``begin_with_settings`` query, with ``params``);
    None: ``fn(conn)`` as it is.

    BEGIN and the settings travel as one message (bound by the client, as
    a simple query: no pipeline, whose state a cancellation could leave
    half-read); with ``fn``'s statement and COMMIT, a one-statement call
    takes three round trips instead of one.
    """
    if params is None:
        return await fn(conn)
    try:
        await psycopg.AsyncClientCursor(conn).execute(begin, params)
        result = await fn(conn)
    except BaseException:
        if not conn.closed and conn.info.transaction_status != pq.TransactionStatus.IDLE:
            # Best effort: a connection still inside the transaction (the
            # rollback cancelled too) is dropped by its lane or its pool.
            with contextlib.suppress(Exception):
                await conn.execute(ROLLBACK)
        raise
    await conn.execute(COMMIT)
    return result


class _Lane:
    """A dedicated autocommit connection for one hot path, reconnected on loss."""

    def __init__(self, name: str, lock_timeout: float | None) -> None:
        self.name = name
        self.lock_timeout = lock_timeout
        self.conn: Conn | None = None
        self.lock = trio.Lock()

    async def drop(self) -> None:
        conn, self.conn = self.conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                await conn.close()


class Connections:
    """The pool and the lanes of one store, and the one way across the bridge.

    With ``session_state`` (the default) each connection gets its settings
    once, as session settings, and psycopg prepares statements it runs
    often. Without, nothing outlives a transaction: no prepared statements,
    and each call's settings apply to its own transaction only (``SET
    LOCAL``), so every statement is safe on a transaction-mode pooler. With
    ``dedicated`` off, the hot paths borrow from the pool rather than hold
    connections of their own (their settings then apply per call too).
    """

    def __init__(
        self,
        *,
        dsn: str,
        schema: str,
        bridge: Bridge,
        pool_size: int,
        lock_timeout: float | None = None,
        leader_lock_timeout: float | None = None,
        async_commit: bool = True,
        session_state: bool = True,
        dedicated: bool = True,
        listen_dsn: str | None = None,
    ) -> None:
        self.dsn = dsn
        self.listen_dsn = dsn if listen_dsn is None else listen_dsn
        self.async_commit = async_commit
        self.session_state = session_state
        self.dedicated = dedicated
        self.schema = schema
        self.bridge = bridge
        # Every pooled statement waits on locks at most lock_timeout, an
        # inform included: as one statement in autocommit it needs no
        # transaction block to scope it (one round trip, not four). A
        # user's transaction on a pooled connection gets the database's
        # default back (see PostgresQueue.transaction).
        self.pool: Pool = bridge.pool(dsn, max_size=pool_size, configure=self._configure_pooled)
        self.pool_size = pool_size
        self.queries = Queries(schema)
        self._apply = self.queries["apply_settings"]
        self._begin = self.queries["begin_with_settings"]
        self.channel = notify_channel(schema)
        self.lock_timeout = lock_timeout
        """The longest any lock wait of this store lasts (None: no bound)."""
        self._lanes = {
            name: _Lane(name, lock_timeout) for name in (*CLAIM_LANES, "complete", "inform")
        }
        self._lanes["leader"] = _Lane(
            "leader", lock_timeout if leader_lock_timeout is None else leader_lock_timeout
        )
        # Each connection's settings: the pool's (key None) and each lane's.
        self._settings = {None: self._pool_settings()} | {
            name: self._lane_settings(lane) for name, lane in self._lanes.items()
        }
        # Per call, the settings a session would otherwise hold, as the
        # parameters of begin_with_settings (None: the session holds them).
        # Lanes borrowing from the pool apply theirs per call, too.
        self._local: dict[str | None, dict[str, Any] | None] = {
            name: settings_params(settings, local=True)
            if settings and (not session_state or (name is not None and not dedicated))
            else None
            for name, settings in self._settings.items()
        }

    def _lane_settings(self, lane: _Lane) -> list[tuple[str, str]]:
        settings = lane_settings(lane.name, async_commit=self.async_commit)
        if lane.lock_timeout is not None:
            # No statement of a lane waits on a lock without bound: a backend
            # left waiting would outlive a call given up on (and its
            # connection), and still commit when the lock goes.
            settings.append(("lock_timeout", lock_timeout_ms(lane.lock_timeout)))
        return settings

    def _pool_settings(self) -> list[tuple[str, str]]:
        if self.lock_timeout is None:
            return []
        return [("lock_timeout", lock_timeout_ms(self.lock_timeout))]

    def describe(self) -> str:
        return describe_dsn(self.dsn)

    async def call(self, fn: Callable[[], Awaitable[R]], *, what: str) -> R:
        """Run the asyncio coroutine function ``fn`` across the bridge,
        translating driver errors to :class:`StoreError`."""
        try:
            return await self.bridge.run(fn)
        except psycopg.Error as exc:
            raise store_error(exc, what) from exc
        except OSError as exc:
            raise store_error(exc, what) from exc

    async def on_lane(self, lane_name: str, fn: Callable[[Conn], Awaitable[R]], what: str) -> R:
        lane = self._lanes[lane_name]
        local = self._local[lane_name]
        if not self.dedicated:
            return await self._on_pool(fn, what, local)

        async def run() -> R:
            retried = False
            while True:
                if lane.conn is not None and not _still_connected(lane.conn):
                    # Closed by the server while idle (idle_session_timeout, a
                    # restart, a proxy): found before sending anything, so
                    # reconnecting loses nothing.
                    log.debug("the %s connection was closed by the server; reconnecting", lane.name)
                    await lane.drop()
                elif lane.conn is not None and not idle_and_healthy(lane.conn):
                    # Left inside a transaction by a call cancelled mid-way:
                    # its next statement would fail, or join that transaction.
                    log.debug(
                        "the %s connection was left in a transaction; reconnecting", lane.name
                    )
                    await lane.drop()
                if lane.conn is None:
                    lane.conn = await self._lane_connection(lane)
                conn = lane.conn
                try:
                    return await with_local_settings(conn, self._begin, local, fn)
                except psycopg.Error as exc:
                    if idle_and_healthy(conn):
                        raise  # refused by the server; the session is fine
                    await lane.drop()  # the next call reconnects
                    if retried or not _never_ran(exc):
                        raise
                    log.debug(
                        "the %s connection was closed by the server as the statement "
                        "was sent; sending it again on a new one",
                        lane.name,
                    )
                    retried = True

        async with lane.lock:
            return await self.call(run, what=what)

    async def _lane_connection(self, lane: _Lane) -> Conn:
        """A new connection with the lane's settings, or none at all: a lane
        must never run on a connection that missed one of them."""
        conn = await self.bridge.connect(self.dsn, autocommit=True)
        try:
            set_json_loads(load_json, conn)
            await self._set_up(conn, self._settings[lane.name])
        except BaseException:
            # Runs on either driver's loop (this may be asyncio code under
            # trio-asyncio), so no Trio shield: close what can be closed.
            with contextlib.suppress(Exception):
                await conn.close()
            raise
        return conn

    async def _set_up(self, conn: Conn, settings: list[tuple[str, str]]) -> None:
        """A new connection's session: its settings, once; or, without
        session state, nothing set and nothing ever prepared."""
        can_send_packed(conn)
        if not self.session_state:
            conn.prepare_threshold = None
        else:
            session = [*settings, *SESSION_SETTINGS]
            await conn.execute(self._apply, settings_params(session, local=False))

    async def _configure_pooled(self, conn: Conn) -> None:
        await self._set_up(conn, self._settings[None])

    def pool_usage(self) -> tuple[int, int]:
        """Pool connections in use, and the most it opens."""
        return pool_in_use(self.pool), self.pool_size

    def free_claim_lane(self) -> str:
        """A claim lane not in use, if there is one (else the first)."""
        for name in CLAIM_LANES:
            if not self._lanes[name].lock.locked():
                return name
        return CLAIM_LANES[0]

    async def begin_as_pool(self, conn: Conn) -> None:
        """BEGIN on ``conn``, one of the pool's, with the settings the
        pool's own calls have: its sessions hold them, or they go with
        BEGIN (without session state)."""
        local = self._local[None]
        if local is None:
            await conn.execute(BEGIN)
        else:
            await psycopg.AsyncClientCursor(conn).execute(self._begin, local)

    async def on_pool(self, fn: Callable[[Conn], Awaitable[R]], what: str) -> R:
        return await self._on_pool(fn, what, self._local[None])

    async def _on_pool(
        self, fn: Callable[[Conn], Awaitable[R]], what: str, local: dict[str, Any] | None
    ) -> R:
        async def run() -> R:
            async with self.pool.connection() as conn:
                return await with_local_settings(conn, self._begin, local, fn)

        return await self.call(run, what=what)

    async def execute(
        self,
        lane: str | None,
        query: str,
        params: Mapping[str, Any],
        what: str,
        *,
        prepare: bool | None = None,
    ) -> list[tuple[Any, ...]]:
        """Run the named ``query`` on ``lane`` (None: a pooled connection);
        ``prepare`` as psycopg's (None: once it has run a few times)."""

        async def run(conn: Conn) -> list[tuple[Any, ...]]:
            cur = await conn.execute(self.queries[query], params, prepare=prepare)
            return await cur.fetchall() if returns_rows(cur) else []

        if lane is None:
            return await self.on_pool(run, what)
        return await self.on_lane(lane, run, what)

    async def aclose(self) -> None:
        async def close() -> None:
            for lane in self._lanes.values():
                if lane.conn is not None:
                    await lane.conn.close()
                    lane.conn = None
            await self.pool.close()

        with trio.CancelScope(shield=True):
            try:
                await self.bridge.run(close)
            except (psycopg.Error, OSError) as exc:
                log.warning("closing database connections failed: %s", redact(str(exc)))
