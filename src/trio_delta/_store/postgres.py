"""The Postgres adapter of the store port (psycopg 3, through the bridge).

Hot paths (claims, outcomes, informer batches) each own a dedicated
connection, a *lane*, so they never wait on a pool checkout; everything else
(``inform``, look-ups, user transactions) borrows from a psycopg pool.
Every public method crosses the bridge once.
"""

from __future__ import annotations

from ._bridge import Bridge, Driver, Pool, open_bridge  # isort: skip  (order no longer matters)

import collections
import contextlib
import json
import logging
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any, LiteralString, TypeVar

import msgspec
import psycopg
import trio
from psycopg import sql
from psycopg.generators import notifies as notifies_gen
from psycopg.types.json import set_json_loads

from .._errors import NotMigratedError, StoreError
from .._objects import PreparedObject
from .._types import AttemptError, ResourceState
from ..migrations.runner import LATEST_VERSION
from .base import (
    MAX_ERRORS,
    AppliedOutcome,
    ClaimBudget,
    ClaimRequest,
    ControllerState,
    InformClaim,
    LeaderState,
    Outcome,
    OutcomeKind,
    ResourceFilter,
    ResourceRecord,
    StaleCheck,
    StoreTransaction,
    UpsertResult,
    dedupe,
)
from .dsn import describe_dsn, redact
from .queries import Queries

log = logging.getLogger("trio_delta.store")
R = TypeVar("R")
Conn = psycopg.AsyncConnection[Any]


#: Lanes whose commits need not wait for the WAL flush. A claim or outcome
#: lost in a database crash is safe to lose: the row stays claimable, or
#: pending until the rescuer retries it (at-least-once either way). Informs
#: are never on such a lane: an inform reported as done must be durable.
ASYNC_COMMIT_LANES = frozenset({"claim", "claim-2", "complete", "leader"})
#: The fetcher may have two claims in flight (see ``_engine/fetcher.py``).
CLAIM_LANES = ("claim", "claim-2")


def notify_channel(schema: str) -> str:
    """The NOTIFY channel of a schema; schemas are at most 40 characters."""
    return f"trio_delta_{schema}"


def _store_error(exc: BaseException, what: str) -> StoreError:
    maybe_applied = isinstance(exc, psycopg.OperationalError)
    return StoreError(f"{what} failed: {redact(str(exc)).strip()}", maybe_applied=maybe_applied)


def load_json(data: str | bytes) -> Any:
    """JSON from the database, decoded by msgspec: half the cost of
    ``json.loads`` per claimed row (metadata and errors). What msgspec
    refuses but Postgres' json type holds (1e400, lone surrogate escapes,
    written by hand in SQL) still loads, through the standard library."""
    try:
        return msgspec.json.decode(data)
    except msgspec.DecodeError:
        return json.loads(data)


def _errors_from_text(text: str) -> tuple[AttemptError, ...]:
    return tuple(
        AttemptError(
            at=datetime.fromisoformat(e["at"]),
            attempt=int(e["attempt"]),
            error=str(e["error"]),
            trace=str(e.get("trace", "")),
        )
        for e in load_json(text)
    )


def record_from_row(row: Sequence[Any]) -> ResourceRecord:
    """A ResourceRecord from a row of ``RESOURCE_COLUMNS``.

    Metadata and errors arrive as text and are decoded here only when not
    empty: psycopg's JSON loaders are Python calls, and on the claim path
    they were half the cost of reading a row (4.3 -> 2.2 us a row)."""
    metadata, errors = row[9], row[11]
    # Positional: keyword arguments cost ~2 us more per row on the claim path.
    return ResourceRecord(
        row[0], row[1], row[2], row[3], ResourceState.parse(row[4]), row[5],
        row[6], row[7].encode(), bytes(row[8]), {} if metadata == "{}" else load_json(metadata),
        tuple(row[10]), () if errors == "[]" else _errors_from_text(errors),
        row[12], row[13], row[14], row[15], row[16], row[17],
    )



def encode_error(error: AttemptError) -> str:
    return msgspec.json.encode(
        {"at": error.at.isoformat(), "attempt": error.attempt, "error": error.error,
         "trace": error.trace}
    ).decode()


def lane_settings(name: str) -> list[LiteralString]:
    """The session settings of the lane ``name`` (constant SQL text)."""
    settings: list[LiteralString] = [
        # Statements are prepared after a few runs; a generic plan cannot
        # see the batch's array sizes or the claim's limit and picked scans
        # costing several times the custom plan.
        "set plan_cache_mode = force_custom_plan",
        # JIT compiling pays off for long analytic queries; for these short
        # statements it cost up to 300 ms when a cost estimate crossed
        # jit_above_cost (large tables, disabled plan shapes).
        "set jit = off",
    ]
    if name in ASYNC_COMMIT_LANES:
        settings.append("set synchronous_commit = off")
    if name == "complete":
        # The outcome statement joins a batch of n outcomes to their n rows.
        # Before autovacuum has analysed a new table, the planner guessed
        # the rows' side at one row and chose a nested loop rescanning the
        # batch for each row: n x n (400 x 400 took 34 ms instead of 7 ms).
        # With nested loops off, the join is a hash join over the rows found
        # by primary key, linear whatever the estimates.
        settings.append("set enable_nestloop = off")
    return settings


class _Lane:
    """A dedicated autocommit connection for one hot path, reconnected on loss."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.conn: Conn | None = None
        self.lock = trio.Lock()


class PostgresTransaction:
    """A user transaction on a pooled connection (see ``Client.transaction``)."""

    def __init__(self, store: PostgresStore, conn: Conn) -> None:
        self._store = store
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
            return await self._store.call(run, what="transaction statement")


class PostgresListener:
    """Reads notifications off a dedicated connection.

    libpq hands over every notification that has arrived at once; they are
    queued here, so none is lost, and a cancelled ``wait()`` (nothing read
    yet) leaves the connection usable.
    """

    def __init__(self, store: PostgresStore, conn: Conn) -> None:
        self._store = store
        self._conn = conn
        self._encoding = conn.info.encoding
        self._pending: collections.deque[str] = collections.deque()
        # psycopg would also copy each notification into an unbounded backlog
        # that only its notifies() generator drains; we read them ourselves.
        conn.pgconn.notify_handler = None

    async def wait(self) -> str:
        async def receive() -> None:
            for notify in await self._conn.wait(notifies_gen(self._conn.pgconn)):
                self._pending.append(notify.extra.decode(self._encoding))

        while not self._pending:
            await self._store.call(receive, what="LISTEN")
        return self._pending.popleft()


class PostgresStore:
    """The store on a Postgres database; open it with :func:`open_postgres_store`."""

    def __init__(self, *, dsn: str, schema: str, bridge: Bridge, pool: Pool):
        self._dsn = dsn
        self.schema = schema
        self._bridge = bridge
        self._pool = pool
        self._queries = Queries(schema)
        self._channel = notify_channel(schema)
        self._lanes = {
            name: _Lane(name) for name in (*CLAIM_LANES, "complete", "inform", "leader")
        }

    def __repr__(self) -> str:
        return f"<PostgresStore {describe_dsn(self._dsn)} schema={self.schema}>"

    # -- plumbing -------------------------------------------------------------

    async def call(self, fn: Callable[[], Awaitable[R]], *, what: str) -> R:
        """Run the asyncio coroutine function ``fn`` across the bridge,
        translating driver errors to :class:`StoreError`."""
        try:
            return await self._bridge.run(fn)
        except psycopg.Error as exc:
            raise _store_error(exc, what) from exc
        except OSError as exc:
            raise _store_error(exc, what) from exc

    async def _on_lane(self, lane_name: str, fn: Callable[[Conn], Awaitable[R]], what: str) -> R:
        lane = self._lanes[lane_name]

        async def run() -> R:
            if lane.conn is None or lane.conn.closed:
                lane.conn = await self._lane_connection(lane.name)
            try:
                return await fn(lane.conn)
            except psycopg.OperationalError:
                # The connection may be dead; drop it so the next call reconnects.
                conn, lane.conn = lane.conn, None
                await conn.close()
                raise

        async with lane.lock:
            return await self.call(run, what=what)

    async def _lane_connection(self, name: str) -> Conn:
        """A new connection with the lane's settings, or none at all: a lane
        must never run on a connection that missed one of them."""
        conn = await self._bridge.connect(self._dsn, autocommit=True)
        try:
            set_json_loads(load_json, conn)
            for statement in lane_settings(name):
                await conn.execute(statement)
        except BaseException:
            # Runs on either driver's loop (this may be asyncio code under
            # trio-asyncio), so no Trio shield: close what can be closed.
            with contextlib.suppress(Exception):
                await conn.close()
            raise
        return conn

    def _free_claim_lane(self) -> str:
        """A claim lane not in use, if there is one (else the first)."""
        for name in CLAIM_LANES:
            if not self._lanes[name].lock.locked():
                return name
        return CLAIM_LANES[0]

    async def _on_pool(self, fn: Callable[[Conn], Awaitable[R]], what: str) -> R:
        async def run() -> R:
            async with self._pool.connection() as conn:
                return await fn(conn)

        return await self.call(run, what=what)

    async def aclose(self) -> None:
        async def close() -> None:
            for lane in self._lanes.values():
                if lane.conn is not None:
                    await lane.conn.close()
                    lane.conn = None
            await self._pool.close()

        with trio.CancelScope(shield=True):
            try:
                await self._bridge.run(close)
            except (psycopg.Error, OSError) as exc:
                log.warning("closing database connections failed: %s", redact(str(exc)))

    # -- the Store protocol ---------------------------------------------------

    async def database_now(self) -> datetime:
        async def run(conn: Conn) -> datetime:
            cur = await conn.execute(self._queries["database_now"])
            row = await cur.fetchone()
            assert row is not None
            return row[0]

        return await self._on_lane("claim", run, "reading the database time")

    async def check_schema(self) -> None:
        async def run(conn: Conn) -> int | None:
            try:
                cur = await conn.execute(self._queries["schema_version"])
            except psycopg.errors.UndefinedTable:
                return None
            row = await cur.fetchone()
            return None if row is None else int(row[0])

        version = await self._on_lane("claim", run, "checking the schema")
        fix = (
            f"run `trio-delta migrate --dsn DSN --schema {self.schema}` "
            f"or `await trio_delta.migrate(dsn, schema={self.schema!r})`"
        )
        if version is None:
            raise NotMigratedError(f"schema {self.schema!r} has no trio_delta tables: {fix}")
        if version < LATEST_VERSION:
            raise NotMigratedError(
                f"schema {self.schema!r} is at version {version}, this library needs "
                f"{LATEST_VERSION}: {fix}"
            )
        if version > LATEST_VERSION:
            log.warning(
                "schema %r is at version %d, newer than this library's %d; upgrade trio_delta",
                self.schema, version, LATEST_VERSION,
            )

    def _upsert_params(self, items: Sequence[PreparedObject], now: datetime,
                       process_existing: bool) -> dict[str, Any]:
        return {
            "kind": [i.kind for i in items],
            "object_id": [i.object_id for i in items],
            "namespace": [i.namespace for i in items],
            "object": [i.encoded.decode() for i in items],
            "hash": [i.hash for i in items],
            "metadata": [i.metadata.decode() for i in items],
            "tags": [msgspec.json.encode(i.tags).decode() for i in items],
            "max_attempts": [i.max_attempts for i in items],
            "now": now,
            "process_existing": process_existing,
            "channel": self._channel,
        }

    async def _upsert_on(
        self, conn: Conn, items: list[PreparedObject], now: datetime,
        process_existing: bool, is_stale: StaleCheck | None, want_records: bool,
    ) -> list[UpsertResult]:
        keys = {"kind": [i.kind for i in items], "object_id": [i.object_id for i in items]}
        to_write = items
        if is_stale is not None:
            cur = await conn.execute(self._queries["lock_existing"], keys)
            stored = {(r[0], r[1]): (r[2].encode(), bytes(r[3])) for r in await cur.fetchall()}
            to_write: list[PreparedObject] = []
            for item in items:
                old = stored.get((item.kind, item.object_id))
                if old is not None and old[1] != item.hash and is_stale(item, old[0]):
                    continue
                to_write.append(item)
        if not want_records:
            if to_write:
                await conn.execute(
                    self._queries["upsert_quiet"],
                    self._upsert_params(to_write, now, process_existing),
                )
            return []
        written: dict[tuple[str, str], tuple[ResourceRecord, bool]] = {}
        if to_write:
            cur = await conn.execute(
                self._queries["upsert"], self._upsert_params(to_write, now, process_existing)
            )
            for row in await cur.fetchall():
                rec = record_from_row(row)
                written[(rec.kind, rec.object_id)] = (rec, bool(row[18]))
        missing = [i for i in items if (i.kind, i.object_id) not in written]
        unchanged: dict[tuple[str, str], ResourceRecord] = {}
        if missing:
            cur = await conn.execute(
                self._queries["select_existing"],
                {"kind": [i.kind for i in missing], "object_id": [i.object_id for i in missing]},
            )
            for row in await cur.fetchall():
                rec = record_from_row(row)
                unchanged[(rec.kind, rec.object_id)] = rec
        results: list[UpsertResult] = []
        for item in items:
            key = (item.kind, item.object_id)
            if key in written:
                rec, inserted = written[key]
                results.append(UpsertResult(rec, already_exists=not inserted, changed=True))
            else:
                results.append(UpsertResult(unchanged[key], already_exists=True, changed=False))
        return results

    async def upsert(
        self,
        items: Sequence[PreparedObject],
        *,
        now: datetime,
        process_existing: bool = False,
        is_stale: StaleCheck | None = None,
        tx: StoreTransaction | None = None,
        want_records: bool = True,
    ) -> list[UpsertResult]:
        unique = dedupe(items)
        if not unique:
            return []

        async def in_transaction(conn: Conn) -> list[UpsertResult]:
            async with conn.transaction():
                return await self._upsert_on(
                    conn, unique, now, process_existing, is_stale, want_records
                )

        if tx is not None:
            if not isinstance(tx, PostgresTransaction):
                raise TypeError("tx must come from this client's transaction()")
            conn = tx.conn
            async with tx.lock:
                return await self.call(
                    lambda: self._upsert_on(conn, unique, now, process_existing, is_stale,
                                            want_records),
                    what="inform",
                )
        if want_records:
            return await self._on_pool(in_transaction, "inform")
        return await self._on_lane("inform", in_transaction, "informer batch")

    async def claim(
        self, requests: Sequence[ClaimRequest], *, now: datetime, client_id: str
    ) -> list[ResourceRecord]:
        requests = [r for r in requests if r.limit > 0 and r.kinds]
        if not requests:
            return []

        async def run(conn: Conn) -> list[ResourceRecord]:
            out: list[ResourceRecord] = []
            budget = ClaimBudget()
            for req in requests:
                for kinds, limit in budget.steps(req):
                    cur = await conn.execute(
                        self._queries["claim"],
                        {"namespace": req.namespace, "kinds": list(kinds), "limit": limit,
                         "now": now, "client_id": client_id},
                        binary=True,
                    )
                    rows = await cur.fetchall()
                    budget.took(kinds, len(rows))
                    out.extend(record_from_row(row) for row in rows)
            return out

        records = await self._on_lane(self._free_claim_lane(), run, "claim")
        records.sort(key=lambda r: (r.scheduled_at, r.id))
        return records

    async def complete(
        self, outcomes: Sequence[Outcome], *, now: datetime, client_id: str
    ) -> list[AppliedOutcome]:
        if not outcomes:
            return []
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
            "channel": self._channel,
        }
        assert all(o.kind is not OutcomeKind.FAILED or o.retry_at is not None for o in outcomes)

        async def run(conn: Conn) -> list[AppliedOutcome]:
            cur = await conn.execute(self._queries["complete"], params, binary=True)
            parse = ResourceState.parse
            return [AppliedOutcome(r[0], parse(r[1]), r[2], r[3], r[4])
                    for r in await cur.fetchall()]

        return await self._on_lane("complete", run, "writing outcomes")

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

        return await self._on_lane(self._free_claim_lane(), run, "looking for scheduled work")

    async def get_resource(self, kind: str, object_id: str) -> ResourceRecord | None:
        async def run(conn: Conn) -> ResourceRecord | None:
            cur = await conn.execute(
                self._queries["get_resource"], {"kind": kind, "object_id": object_id}
            )
            row = await cur.fetchone()
            return None if row is None else record_from_row(row)

        return await self._on_pool(run, "get_resource")

    async def list_resources(self, flt: ResourceFilter) -> list[ResourceRecord]:
        params = {
            "kind": flt.kind,
            "namespace": flt.namespace,
            "state": None if flt.state is None else flt.state.value,
            "after_id": flt.after_id,
            "limit": flt.limit,
        }

        async def run(conn: Conn) -> list[ResourceRecord]:
            cur = await conn.execute(self._queries["list_resources"], params)
            return [record_from_row(row) for row in await cur.fetchall()]

        return await self._on_pool(run, "list_resources")

    @asynccontextmanager
    async def transaction(self) -> AsyncGenerator[PostgresTransaction, None]:
        conn: Conn = await self.call(lambda: self._pool.getconn(), what="opening a transaction")
        try:
            await self.call(lambda: conn.execute("begin"), what="begin")
        except BaseException:
            with trio.CancelScope(shield=True):
                await self.call(lambda: self._pool.putconn(conn), what="returning a connection")
            raise
        tx = PostgresTransaction(self, conn)
        try:
            try:
                yield tx
            except BaseException:
                with trio.CancelScope(shield=True):
                    await self.call(conn.rollback, what="rollback")
                raise
            await self.call(conn.commit, what="commit")
        finally:
            with trio.CancelScope(shield=True):
                await self.call(lambda: self._pool.putconn(conn), what="returning a connection")

    @asynccontextmanager
    async def listen(self) -> AsyncGenerator[PostgresListener, None]:
        async def connect() -> Conn:
            conn = await self._bridge.connect(self._dsn, autocommit=True)
            await conn.execute(sql.SQL("listen {}").format(sql.Identifier(self._channel)))
            return conn

        conn = await self.call(connect, what="LISTEN")
        try:
            yield PostgresListener(self, conn)
        finally:
            with trio.CancelScope(shield=True), contextlib.suppress(psycopg.Error, OSError):
                await self._bridge.run(conn.close)

    async def invalidate(
        self, kind: str, object_id: str, *, now: datetime
    ) -> ResourceRecord | None:
        params = {"kind": kind, "object_id": object_id, "now": now, "channel": self._channel}

        async def run(conn: Conn) -> ResourceRecord | None:
            cur = await conn.execute(self._queries["invalidate"], params)
            row = await cur.fetchone()
            return None if row is None else record_from_row(row)

        return await self._on_pool(run, "invalidate")

    # -- informer schedule ------------------------------------------------------

    async def _execute(self, lane: str | None, query: str, params: Mapping[str, Any],
                       what: str) -> list[tuple[Any, ...]]:
        async def run(conn: Conn) -> list[tuple[Any, ...]]:
            cur = await conn.execute(self._queries[query], params)
            return await cur.fetchall() if cur.description is not None else []

        if lane is None:
            return await self._on_pool(run, what)
        return await self._on_lane(lane, run, what)

    async def ensure_controllers(
        self, schedule: Mapping[str, datetime | None], *, now: datetime
    ) -> None:
        await self._execute(
            "inform", "ensure_controllers",
            {"kind": list(schedule), "next_inform_at": list(schedule.values()), "now": now},
            "registering controllers",
        )

    async def claim_inform(
        self, kind: str, *, now: datetime, client_id: str, lease_until: datetime
    ) -> InformClaim | None:
        rows = await self._execute(
            "inform", "claim_inform",
            {"kind": kind, "now": now, "client_id": client_id, "lease_until": lease_until},
            "claiming an informer run",
        )
        if not rows:
            return None
        cursor, requested_at, process_existing, options = rows[0]
        return InformClaim(
            cursor=cursor, requested_at=requested_at, process_existing=bool(process_existing),
            options=None if options is None else msgspec.json.decode(options),
        )

    async def finish_inform(
        self,
        kind: str,
        *,
        now: datetime,
        client_id: str,
        cursor: datetime | None,
        reschedule: bool,
        next_inform_at: datetime | None,
        requested_at: datetime | None,
        error: str | None,
    ) -> None:
        await self._execute(
            "inform", "finish_inform",
            {"kind": kind, "now": now, "client_id": client_id, "cursor": cursor,
             "reschedule": reschedule, "next_inform_at": next_inform_at,
             "requested_at": requested_at, "error": error},
            "finishing an informer run",
        )

    async def request_inform(
        self, kind: str, *, now: datetime, process_existing: bool,
        options: Mapping[str, Any] | None,
    ) -> None:
        await self._execute(
            None, "request_inform",
            {"kind": kind, "now": now, "process_existing": process_existing,
             "inform_options": None if options is None else msgspec.json.encode(options).decode(),
             "channel": self._channel},
            "requesting an informer run",
        )

    @staticmethod
    def _controller(row: Sequence[Any]) -> ControllerState:
        return ControllerState(
            kind=row[0], cursor=row[1], next_inform_at=row[2], lease_owner=row[3],
            lease_expires_at=row[4], requested_at=row[5], process_existing=bool(row[6]),
            last_run_at=row[7], last_error=row[8],
        )

    async def get_controller(self, kind: str) -> ControllerState | None:
        rows = await self._execute(None, "get_controller", {"kind": kind}, "reading a controller")
        return self._controller(rows[0]) if rows else None

    async def list_controllers(self) -> list[ControllerState]:
        rows = await self._execute(None, "list_controllers", {}, "listing controllers")
        return [self._controller(r) for r in rows]

    # -- leader election ----------------------------------------------------------

    async def elect(
        self, name: str, *, client_id: str, now: datetime, expires_at: datetime
    ) -> bool:
        rows = await self._execute(
            "leader", "elect",
            {"name": name, "client_id": client_id, "now": now, "expires_at": expires_at},
            "leader election",
        )
        return bool(rows) and rows[0][0] == client_id

    async def resign(self, name: str, *, client_id: str) -> None:
        await self._execute(
            "leader", "resign", {"name": name, "client_id": client_id, "channel": self._channel},
            "resigning leadership",
        )

    async def get_leader(self, name: str) -> LeaderState | None:
        rows = await self._execute(None, "get_leader", {"name": name}, "reading the leader")
        return LeaderState(*rows[0]) if rows else None

    # -- maintenance ------------------------------------------------------------

    async def rescue(
        self, *, now: datetime, stuck_before: datetime, limit: int, error: str
    ) -> int:
        rows = await self._execute(
            "leader", "rescue",
            {"now": now, "now_text": now.isoformat(), "stuck_before": stuck_before,
             "limit": limit, "error": error, "max_errors": MAX_ERRORS,
             "channel": self._channel},
            "rescuing stuck resources",
        )
        return int(rows[0][0]) if rows else 0

    async def expire(
        self, namespace: str, *, now: datetime, synced_before: datetime, limit: int
    ) -> int:
        rows = await self._execute(
            "leader", "expire",
            {"namespace": namespace, "now": now, "synced_before": synced_before,
             "limit": limit, "channel": self._channel},
            "expiring resources",
        )
        return int(rows[0][0]) if rows else 0

    async def clean(
        self, namespace: str, state: ResourceState, *, updated_before: datetime, limit: int
    ) -> int:
        params = {"namespace": namespace, "state": state.value,
                  "updated_before": updated_before, "limit": limit}

        async def run(conn: Conn) -> int:
            cur = await conn.execute(self._queries["clean"], params)
            return cur.rowcount

        return await self._on_lane("leader", run, "cleaning resources")



@asynccontextmanager
async def open_postgres_store(
    dsn: str, *, schema: str, pool_size: int, driver: Driver = "native"
) -> AsyncGenerator[PostgresStore, None]:
    """Open the driver, a connection pool and the store; check the schema."""
    async with open_bridge(driver) as bridge:
        pool = bridge.pool(dsn, max_size=pool_size)
        store = PostgresStore(dsn=dsn, schema=schema, bridge=bridge, pool=pool)
        try:
            # Connect once up front so a bad DSN fails fast with one clear error.
            await store.check_schema()
            await store.call(lambda: pool.open(wait=False), what="opening the pool")
            yield store
        finally:
            await store.aclose()
