"""The resource queue on Postgres: upsert, claim, complete, and the wake-ups."""

from __future__ import annotations

import collections
import contextlib
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any

import psycopg
import trio
from psycopg import sql

from ..._errors import ConfigError, LockTimeoutError, StoreError
from ..._logs import get_logger
from ..._objects import PreparedObject
from ..._types import InformResult, Resource, ResourceState
from ..params import (
    MAX_ERRORS,
    AppliedOutcome,
    ClaimBudget,
    ClaimRequest,
    ClusterLimit,
    Completed,
    Outcome,
    UpsertParams,
    claim_order,
    dedupe,
    lock_timeout_error,
    rate_limited,
    upsert_one_by_one,
)
from ..port import AppConnection, StoreTransaction
from ..trio_psycopg import TrioConnection, read_notifies
from .columns import array_or_all, encode_error, row_from_columns, sends_packed
from .connections import Conn, Connections, idle_and_healthy, store_error
from .runners import Plan, in_transaction_async, in_transaction_sync, returns_rows, run_async
from .statements import (
    Target,
    bounded,
    upsert_batches,
    upsert_overlapped,
    upsert_plan,
    upsert_quiet_plan,
)

log = get_logger("trio_delta.store")

#: The server version that has ``idle_session_timeout`` (Postgres 14).
IDLE_SESSION_TIMEOUT_SINCE = 140000


class PostgresTransaction:
    """A user transaction on a pooled connection (see ``Client.transaction``)."""

    def __init__(self, connections: Connections, conn: Conn, *, informs_only: bool) -> None:
        self._connections = connections
        self.conn = conn
        #: Only the client's own informs run in it (a streamed bulk inform),
        #: never a user's SQL: bounded throughout like the pool's calls, and
        #: free to end early when one fails.
        self.informs_only = informs_only
        # One statement at a time, even if the user shares tx between tasks.
        self.lock = trio.Lock()

    async def execute(
        self, query: str, params: Sequence[Any] | Mapping[str, Any] | None = None
    ) -> list[tuple[Any, ...]]:
        async def run() -> list[tuple[Any, ...]]:
            cur = await self.conn.execute(query, params)  # pyright: ignore[reportArgumentType]
            return await cur.fetchall() if returns_rows(cur) else []

        async with self.lock:
            return await self._connections.call(run, what="transaction statement")


class PostgresListener:
    """Reads notifications off a dedicated connection.

    libpq hands over every notification that has arrived at once; they are
    queued here, so none is lost, and a cancelled ``wait()`` (nothing read
    yet) leaves the connection usable.
    """

    def __init__(self, connections: Connections, conn: Conn) -> None:
        self._connections = connections
        self._conn = conn
        self._encoding = conn.info.encoding
        self._pending: collections.deque[str] = collections.deque()
        # psycopg would also copy each notification into an unbounded backlog
        # that only its notifies() generator drains; we read them ourselves.
        conn.pgconn.notify_handler = None

    async def wait(self) -> str:
        async def receive() -> None:
            for notify in await read_notifies(self._conn):
                self._pending.append(notify.extra.decode(self._encoding))

        while not self._pending:
            await self._connections.call(receive, what="LISTEN")
        return self._pending.popleft()


class PostgresQueue:
    """The queue part of :class:`~trio_delta._store.postgres.PostgresStore`."""

    def __init__(self, connections: Connections) -> None:
        self._c = connections
        self._queries = connections.queries
        self._target = Target(connections.queries, connections.channel)

    async def _held(self, conn: Conn, items: Sequence[PreparedObject]) -> list[tuple[str, str]]:
        """The (kind, id) of ``items`` whose rows another transaction holds,
        for an error to name; one item is named without asking."""
        if len(items) == 1:
            return [(items[0].kind, items[0].object_id)]
        if not idle_and_healthy(conn):
            return []  # a user's transaction the failure aborted: cannot ask
        cur = await conn.execute(
            self._queries["held_rows"],
            {"kind": [i.kind for i in items], "object_id": [i.object_id for i in items]},
        )
        return [(kind, object_id) for kind, object_id in await cur.fetchall()]

    @property
    def _bounds_informs(self) -> bool:
        return self._c.lock_timeout is not None

    async def upsert(
        self,
        items: Sequence[PreparedObject],
        params: UpsertParams,
        tx: StoreTransaction | AppConnection | None = None,
    ) -> list[InformResult[Any]]:
        unique = dedupe(items)
        if not unique:
            return []
        if tx is None:
            # Pooled connections bound lock waits by themselves (a session
            # setting): an upsert that is one statement is atomic in
            # autocommit, one round trip. A stale check (read, then write)
            # or several statements need a transaction.
            one_statement = params.is_stale is None and len(upsert_batches(unique)) == 1

            async def in_transaction(conn: Conn) -> list[InformResult[Any]]:
                plan = upsert_plan(self._target, unique, params, packed=sends_packed(conn))
                return await self._bounded(conn, unique, plan, own=not one_statement)

            return await self._c.on_pool(in_transaction, "inform")
        if isinstance(tx, PostgresTransaction):
            conn = tx.conn

            plan = (
                upsert_plan(self._target, unique, params, packed=sends_packed(conn))
                if tx.informs_only  # ours alone, as a pool connection's call is
                else self._plan(unique, params)
            )

            async def in_users_transaction() -> list[InformResult[Any]]:
                return await self._bounded(conn, unique, plan, ends=tx.informs_only)

            async with tx.lock:
                return await self._c.call(in_users_transaction, what="inform")
        return await self._upsert_on_app_connection(tx, unique, params)

    async def upsert_chunks(
        self,
        next_chunk: Callable[[], Awaitable[list[PreparedObject] | None]],
        params: UpsertParams,
        tx: StoreTransaction,
    ) -> list[InformResult[Any]]:
        if (
            not isinstance(tx, PostgresTransaction)
            or not tx.informs_only
            or params.is_stale is not None
            or not isinstance(tx.conn, TrioConnection)
        ):
            # A stale check reads before it writes, leaving nothing to
            # overlap; across trio-asyncio's bridge nothing awaits Trio.
            return await upsert_one_by_one(self.upsert, next_chunk, params, tx)
        conn = tx.conn
        unread: list[PreparedObject] = []

        async def overlapped() -> list[InformResult[Any]]:
            try:
                return await upsert_overlapped(conn, self._target, next_chunk, params, unread)
            except psycopg.errors.LockNotAvailable as exc:
                raise await self._lock_timeout(conn, unread, ends=True) from exc

        async with tx.lock:
            return await self._c.call(overlapped, what="inform")

    def _plan(
        self, items: list[PreparedObject], params: UpsertParams
    ) -> Plan[list[InformResult[Any]]]:
        """The upsert inside a transaction of the caller's, bounded by the
        store's lock timeout for its own statements only: the caller's later
        statements keep the lock_timeout they had."""
        return bounded(
            upsert_plan(self._target, items, params), self._queries, self._c.lock_timeout
        )

    async def _upsert_on_app_connection(
        self,
        conn: StoreTransaction | AppConnection,
        items: list[PreparedObject],
        params: UpsertParams,
    ) -> list[InformResult[Any]]:
        """Inform on an application's own psycopg connection: a synchronous
        one in a thread (it blocks), an async one only if it runs on Trio.
        Neither crosses the bridge: the trio-asyncio driver's loop is for
        the store's own connections."""
        if isinstance(conn, psycopg.AsyncConnection) and not isinstance(conn, TrioConnection):
            raise ConfigError(
                "this AsyncConnection does not run on Trio: open one with "
                "trio_delta.connect(), or inform from asyncio with "
                "trio_delta.producer.inform_async()"
            )
        if not isinstance(conn, psycopg.Connection | TrioConnection):
            raise ConfigError(
                "tx must come from client.transaction(), or be a psycopg Connection or a "
                f"connection from trio_delta.connect(); got {type(conn).__name__}"
            )
        plan = self._plan(items, params)
        try:
            if isinstance(conn, TrioConnection):
                return await in_transaction_async(conn, plan)
            return await trio.to_thread.run_sync(in_transaction_sync, conn, plan)
        except psycopg.errors.LockNotAvailable as exc:
            # The caller's transaction is aborted: nothing can ask which
            # row was held, so only a lone object is named.
            held = [(items[0].kind, items[0].object_id)] if len(items) == 1 else []
            raise lock_timeout_error("inform", held, self._c.lock_timeout) from exc
        except (psycopg.Error, OSError) as exc:
            raise store_error(exc, "inform") from exc

    async def _bounded(
        self,
        conn: Conn,
        items: list[PreparedObject],
        plan: Plan[list[InformResult[Any]]],
        *,
        own: bool = False,
        ends: bool = False,
    ) -> list[InformResult[Any]]:
        """Run the upsert ``plan`` of ``items`` (in a transaction of its own
        with ``own``); a lock held past the lock timeout fails it with the
        held rows named (see :meth:`_lock_timeout` for ``ends``)."""
        try:
            if own:
                return await in_transaction_async(conn, plan)
            return await run_async(conn, plan)
        except psycopg.errors.LockNotAvailable as exc:
            raise await self._lock_timeout(conn, items, ends=ends) from exc

    async def _lock_timeout(
        self, conn: Conn, items: Sequence[PreparedObject], *, ends: bool
    ) -> LockTimeoutError:
        """The error of an inform of ``items`` given up on a held row.
        ``ends``: the transaction it aborted runs nothing but the client's
        informs, so it ends here, and the rows held can be asked for
        (ending it again later does nothing)."""
        held: list[tuple[str, str]] = []
        try:
            if ends:
                await conn.rollback()
            held = await self._held(conn, items)
        except (psycopg.Error, OSError) as exc:
            log.warning("could not ask which rows an inform waited for: %s", exc)
        return lock_timeout_error("inform", held, self._c.lock_timeout)

    async def upsert_quiet(self, items: Sequence[PreparedObject], params: UpsertParams) -> None:
        unique = dedupe(items)
        if not unique:
            return

        async def in_transaction(conn: Conn) -> None:
            try:
                plan = upsert_quiet_plan(self._target, unique, params, packed=sends_packed(conn))
                await in_transaction_async(conn, plan)
            except psycopg.errors.LockNotAvailable as exc:
                # Rolled back: the lane may ask which rows were held.
                raise lock_timeout_error(
                    "informer batch", await self._held(conn, unique), self._c.lock_timeout
                ) from exc

        await self._c.on_lane("inform", in_transaction, "informer batch")

    async def claim(
        self, requests: Sequence[ClaimRequest], *, now: datetime, client_id: str
    ) -> list[Resource[Any]]:
        requests = [r for r in requests if r.limit > 0 and r.kinds]
        if not requests:
            return []

        async def run(conn: Conn) -> list[Resource[Any]]:
            out: list[Resource[Any]] = []
            budget = ClaimBudget()
            for req in requests:
                for kinds, limit in budget.steps(req):
                    params = {
                        "namespace": req.namespace,
                        "kinds": list(kinds),
                        "limit": limit,
                        "now": now,
                        "client_id": client_id,
                    }
                    bound = req.cluster.get(kinds[0]) if len(kinds) == 1 else None
                    if bound is None:
                        cur = await conn.execute(self._queries["claim"], params, binary=True)
                        rows = await cur.fetchall()
                    else:
                        rows = await self._claim_bounded(conn, params, bound)
                    budget.took(kinds, len(rows))
                    out.extend(row_from_columns(row) for row in rows)
            # An UPDATE returns its rows in no particular order.
            out.sort(key=claim_order)
            return out

        return await self._c.on_lane(self._c.free_claim_lane(), run, "claim")

    async def _claim_bounded(
        self, conn: Conn, params: dict[str, Any], bound: ClusterLimit
    ) -> list[tuple[Any, ...]]:
        """A claim step of one kind bounded across the cluster (a cap, a
        rate), in a transaction holding the kind's advisory lock: two
        clients cannot both see the same room (see ``claim_capped``)."""
        kind = params["kinds"][0]
        lock = f"trio_delta:{self._c.channel}:bound:{kind}"
        q = self._queries
        async with conn.transaction():
            await conn.execute(q["lock_kind"], {"lock": lock})
            bucket = {"kind": kind, "now": params["now"]}
            tokens = 0.0
            if bound.per_second is not None:
                bucket |= {"rate": bound.per_second, "burst": bound.burst}
                cur = await conn.execute(q["read_bucket"], bucket)
                (tokens,) = await cur.fetchone() or (0.0,)
                params = params | {"limit": rate_limited(tokens, params["limit"])}
                if params["limit"] == 0:
                    return []
            if bound.cap is None:
                cur = await conn.execute(q["claim"], params, binary=True)
            else:
                cur = await conn.execute(
                    q["claim_capped"], params | {"cap": bound.cap}, binary=True
                )
            rows = await cur.fetchall()
            if bound.per_second is not None:
                await conn.execute(q["write_bucket"], bucket | {"tokens": tokens - len(rows)})
            return rows

    async def not_pending(self, ids: Sequence[int]) -> list[int]:
        if not ids:
            return []
        rows = await self._c.execute(None, "not_pending", {"ids": list(ids)}, "checking work")
        return [row[0] for row in rows]

    async def complete(
        self, outcomes: Sequence[Outcome], *, now: datetime, client_id: str
    ) -> Completed:
        if not outcomes:
            return Completed([], [])
        params: dict[str, Any] = {
            "id": [o.id for o in outcomes],
            "attempt": [o.attempt for o in outcomes],
            "hash": [o.hash for o in outcomes],
            "now": now,
            "client_id": client_id,
            "max_errors": MAX_ERRORS,
            "channel": self._c.channel,
        }
        # A clean batch: every outcome synced, without error or retry time.
        array_or_all(params, "outcome", [o.kind.value for o in outcomes])
        array_or_all(
            params,
            "error",
            [None if o.error is None else encode_error(o.error) for o in outcomes],
        )
        array_or_all(params, "retry_at", [o.retry_at for o in outcomes])

        async def run(conn: Conn) -> Completed:
            cur = await conn.execute(self._queries["complete"], params, binary=True)
            parse = ResourceState.parse
            done = Completed([], [])
            for r in await cur.fetchall():
                if r[5]:
                    done.locked.append(r[0])
                else:
                    done.applied.append(AppliedOutcome(r[0], parse(r[1]), r[2], r[3], r[4]))
            return done

        return await self._c.on_lane("complete", run, "writing outcomes")

    async def next_scheduled_at(
        self, namespaces: Sequence[str], kinds: Sequence[str]
    ) -> datetime | None:
        async def run(conn: Conn) -> datetime | None:
            cur = await conn.execute(
                self._queries["next_scheduled_at"],
                {"namespaces": list(namespaces), "kinds": list(kinds)},
            )
            row = await cur.fetchone()
            return None if row is None else row[0]

        return await self._c.on_lane(self._c.free_claim_lane(), run, "looking for scheduled work")

    @asynccontextmanager
    async def transaction(
        self, *, informs_only: bool = False
    ) -> AsyncGenerator[PostgresTransaction, None]:
        pool = self._c.pool
        conn: Conn = await self._c.call(pool.getconn, what="opening a transaction")

        async def open_transaction() -> None:
            if informs_only:
                # Only informs run in it: bounded as the pool's own calls.
                await self._c.begin_as_pool(conn)
                return
            # The user's statements run as the database's settings say, not
            # as the pool's sessions do for our own statements: lock waits
            # without the pool's bound (informs in it scope that bound to
            # themselves), times in the database's zone (SESSION_SETTINGS).
            begin = "begin"
            if self._c.session_state:
                begin += "; set local timezone to default"
            if self._bounds_informs:
                begin += "; set local lock_timeout to default"
            await conn.execute(begin)

        try:
            await self._c.call(open_transaction, what="begin")
        except BaseException:
            with trio.CancelScope(shield=True):
                await self._c.call(lambda: pool.putconn(conn), what="returning a connection")
            raise
        tx = PostgresTransaction(self._c, conn, informs_only=informs_only)
        try:
            try:
                yield tx
            except BaseException:
                # What ended the block is what the caller hears of; a
                # connection too broken to roll back is closed by the pool.
                with trio.CancelScope(shield=True):
                    try:
                        await self._c.call(conn.rollback, what="rollback")
                    except StoreError as exc:
                        log.warning("%s (the connection is dropped)", exc)
                raise
            await self._c.call(conn.commit, what="commit")
        finally:
            with trio.CancelScope(shield=True):
                await self._c.call(lambda: pool.putconn(conn), what="returning a connection")

    @asynccontextmanager
    async def listen(self) -> AsyncGenerator[PostgresListener, None]:
        async def connect() -> Conn:
            conn = await self._c.bridge.connect(self._c.listen_dsn, autocommit=True)
            try:
                if conn.info.server_version >= IDLE_SESSION_TIMEOUT_SINCE:
                    # Waiting idle for notifications is this session's job: a
                    # server closing idle sessions would drop it every few
                    # seconds, and the notifications sent while it reconnects.
                    await conn.execute("set idle_session_timeout = 0")
                await conn.execute(sql.SQL("listen {}").format(sql.Identifier(self._c.channel)))
            except BaseException:
                with contextlib.suppress(Exception):
                    await conn.close()
                raise
            return conn

        conn = await self._c.call(connect, what="LISTEN")
        try:
            yield PostgresListener(self._c, conn)
        finally:
            with trio.CancelScope(shield=True), contextlib.suppress(psycopg.Error, OSError):
                await self._c.bridge.run(conn.close)
