"""The resource queue on Postgres: upsert, claim, complete, and the wake-ups."""

from __future__ import annotations

import collections
import contextlib
from collections.abc import AsyncGenerator, Mapping, Sequence
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any

import msgspec
import psycopg
import trio
from psycopg import sql

from ..._objects import PreparedObject
from ..._types import Resource, ResourceRow, ResourceState
from ..params import (
    MAX_ERRORS,
    AppliedOutcome,
    ClaimBudget,
    ClaimRequest,
    Completed,
    Outcome,
    OutcomeKind,
    UpsertParams,
    UpsertResult,
    dedupe,
    lock_timeout_error,
)
from ..port import StoreTransaction
from ..trio_psycopg import read_notifies
from .connections import (
    Conn,
    Connections,
    encode_error,
    idle_and_healthy,
    lock_timeout_ms,
    row_from_columns,
)

#: The server version that has ``idle_session_timeout`` (Postgres 14).
IDLE_SESSION_TIMEOUT_SINCE = 140000


class PostgresTransaction:
    """A user transaction on a pooled connection (see ``Client.transaction``)."""

    def __init__(self, connections: Connections, conn: Conn) -> None:
        self._connections = connections
        self.conn = conn
        # One statement at a time, even if the user shares tx between tasks.
        self.lock = trio.Lock()

    async def execute(
        self, query: str, params: Sequence[Any] | Mapping[str, Any] | None = None
    ) -> list[tuple[Any, ...]]:
        async def run() -> list[tuple[Any, ...]]:
            cur = await self.conn.execute(query, params)  # pyright: ignore[reportArgumentType]
            return await cur.fetchall() if cur.description is not None else []

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

    def _upsert_params(
        self, items: Sequence[PreparedObject], params: UpsertParams
    ) -> dict[str, Any]:
        return {
            "kind": [i.kind for i in items],
            "object_id": [i.object_id for i in items],
            "namespace": [i.namespace for i in items],
            "object": [i.encoded.decode() for i in items],
            "hash": [i.hash for i in items],
            "metadata": [i.metadata.decode() for i in items],
            "tags": [msgspec.json.encode(i.tags).decode() for i in items],
            "max_attempts": [i.max_attempts for i in items],
            "now": params.now,
            "process_existing": params.process_existing,
            "channel": self._c.channel,
        }

    async def _fresh(
        self, conn: Conn, items: list[PreparedObject], params: UpsertParams
    ) -> list[PreparedObject]:
        """``items`` less those older than their stored row (locked meanwhile)."""
        if params.is_stale is None:
            return items
        keys = {"kind": [i.kind for i in items], "object_id": [i.object_id for i in items]}
        cur = await conn.execute(self._queries["lock_existing"], keys)
        stored = {(r[0], r[1]): (r[2].encode(), bytes(r[3])) for r in await cur.fetchall()}
        fresh: list[PreparedObject] = []
        for item in items:
            old = stored.get((item.kind, item.object_id))
            if old is not None and old[1] != item.hash and params.is_stale(item, old[0]):
                continue
            fresh.append(item)
        return fresh

    async def _upsert_on(
        self, conn: Conn, items: list[PreparedObject], params: UpsertParams
    ) -> list[UpsertResult]:
        to_write = await self._fresh(conn, items, params)
        written: dict[tuple[str, str], tuple[ResourceRow[Any], bool]] = {}
        if to_write:
            cur = await conn.execute(self._queries["upsert"], self._upsert_params(to_write, params))
            for columns in await cur.fetchall():
                row = row_from_columns(columns)
                written[(row.kind, row.object_id)] = (row, bool(columns[18]))
        missing = [i for i in items if (i.kind, i.object_id) not in written]
        unchanged: dict[tuple[str, str], ResourceRow[Any]] = {}
        if missing:
            cur = await conn.execute(
                self._queries["select_existing"],
                {"kind": [i.kind for i in missing], "object_id": [i.object_id for i in missing]},
            )
            for columns in await cur.fetchall():
                row = row_from_columns(columns)
                unchanged[(row.kind, row.object_id)] = row
        results: list[UpsertResult] = []
        for item in items:
            key = (item.kind, item.object_id)
            if key in written:
                row, inserted = written[key]
                results.append(UpsertResult(row, already_exists=not inserted, changed=True))
            else:
                results.append(UpsertResult(unchanged[key], already_exists=True, changed=False))
        return results

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

    def _lock_timeout_param(self) -> dict[str, str]:
        return {"lock_timeout": lock_timeout_ms(self._c.lock_timeout)}

    @property
    def _bounds_informs(self) -> bool:
        return self._c.lock_timeout is not None

    async def upsert(
        self,
        items: Sequence[PreparedObject],
        params: UpsertParams,
        tx: StoreTransaction | None = None,
    ) -> list[UpsertResult]:
        unique = dedupe(items)
        if not unique:
            return []
        if tx is not None:
            if not isinstance(tx, PostgresTransaction):
                raise TypeError("tx must come from this client's transaction()")
            conn = tx.conn

            async def in_users_transaction() -> list[UpsertResult]:
                if not self._bounds_informs:
                    return await self._bounded(conn, unique, params)
                # The bound holds for this inform only: the user's own later
                # statements keep the lock_timeout they had.
                cur = await conn.execute(
                    self._queries["scope_lock_timeout"], self._lock_timeout_param()
                )
                row = await cur.fetchone()
                assert row is not None
                results = await self._bounded(conn, unique, params)
                await conn.execute(
                    self._queries["set_local_lock_timeout"], {"lock_timeout": row[0]}
                )
                return results

            async with tx.lock:
                return await self._c.call(in_users_transaction, what="inform")

        async def in_transaction(conn: Conn) -> list[UpsertResult]:
            async with conn.transaction():
                if self._bounds_informs:
                    await conn.execute(
                        self._queries["set_local_lock_timeout"], self._lock_timeout_param()
                    )
                return await self._bounded(conn, unique, params)

        return await self._c.on_pool(in_transaction, "inform")

    async def _bounded(
        self, conn: Conn, items: list[PreparedObject], params: UpsertParams
    ) -> list[UpsertResult]:
        try:
            return await self._upsert_on(conn, items, params)
        except psycopg.errors.LockNotAvailable as exc:
            raise lock_timeout_error(
                "inform", await self._held(conn, items), self._c.lock_timeout
            ) from exc

    async def upsert_quiet(self, items: Sequence[PreparedObject], params: UpsertParams) -> None:
        unique = dedupe(items)
        if not unique:
            return

        async def in_transaction(conn: Conn) -> None:
            try:
                async with conn.transaction():
                    to_write = await self._fresh(conn, unique, params)
                    if to_write:
                        await conn.execute(
                            self._queries["upsert_quiet"], self._upsert_params(to_write, params)
                        )
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
                    cur = await conn.execute(
                        self._queries["claim"],
                        {
                            "namespace": req.namespace,
                            "kinds": list(kinds),
                            "limit": limit,
                            "now": now,
                            "client_id": client_id,
                        },
                        binary=True,
                    )
                    rows = await cur.fetchall()
                    budget.took(kinds, len(rows))
                    out.extend(row_from_columns(row) for row in rows)
            return out

        claimed = await self._c.on_lane(self._c.free_claim_lane(), run, "claim")
        claimed.sort(key=lambda r: (r.scheduled_at, r.id))
        return claimed

    async def complete(
        self, outcomes: Sequence[Outcome], *, now: datetime, client_id: str
    ) -> Completed:
        if not outcomes:
            return Completed([], [])
        params = {
            "id": [o.id for o in outcomes],
            "attempt": [o.attempt for o in outcomes],
            "hash": [o.hash for o in outcomes],
            "outcome": [o.kind.value for o in outcomes],
            "error": [None if o.error is None else encode_error(o.error) for o in outcomes],
            "retry_at": [o.retry_at for o in outcomes],
            "now": now,
            "client_id": client_id,
            "max_errors": MAX_ERRORS,
            "channel": self._c.channel,
        }
        assert all(o.kind is not OutcomeKind.FAILED or o.retry_at is not None for o in outcomes)

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
    async def transaction(self) -> AsyncGenerator[PostgresTransaction, None]:
        pool = self._c.pool
        conn: Conn = await self._c.call(pool.getconn, what="opening a transaction")
        try:
            await self._c.call(lambda: conn.execute("begin"), what="begin")
        except BaseException:
            with trio.CancelScope(shield=True):
                await self._c.call(lambda: pool.putconn(conn), what="returning a connection")
            raise
        tx = PostgresTransaction(self._c, conn)
        try:
            try:
                yield tx
            except BaseException:
                with trio.CancelScope(shield=True):
                    await self._c.call(conn.rollback, what="rollback")
                raise
            await self._c.call(conn.commit, what="commit")
        finally:
            with trio.CancelScope(shield=True):
                await self._c.call(lambda: pool.putconn(conn), what="returning a connection")

    @asynccontextmanager
    async def listen(self) -> AsyncGenerator[PostgresListener, None]:
        async def connect() -> Conn:
            conn = await self._c.bridge.connect(self._c.dsn, autocommit=True)
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
