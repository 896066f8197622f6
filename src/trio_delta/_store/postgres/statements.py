"""Informing on any psycopg connection: the statements as plans, and their runners.

The client's pool connections run on Trio; an application's own
connection may be synchronous (a web framework's thread, a script) or
asyncio's. The statements an inform runs, and how it reads their rows, must
not be written once per kind of connection. So they are *plans*: generators
that yield each :class:`Statement` and are sent its rows; a runner per
connection kind (:func:`run_sync`, :func:`run_async`) executes them. The
Postgres store's queue, the client's ``inform_tx`` on an application's
connection and :mod:`trio_delta.producer` all run the same plans.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeAlias, TypeVar

import msgspec
import psycopg
from psycopg import pq, sql
from psycopg.rows import tuple_row

from ..._objects import PreparedObject
from ..._types import InformResult, ResourceRow
from ..params import Change, ResourceFilter, UpsertParams
from ..queries import Queries
from .connections import lock_timeout_ms, row_from_columns, row_from_written

T = TypeVar("T")
Rows: TypeAlias = list[tuple[Any, ...]]


def _rows(rows: Rows) -> Rows:
    return rows


@dataclass(frozen=True, slots=True)
class Statement:
    """One statement of a plan, and what to make of its rows (``read``;
    by default the rows themselves)."""

    query: sql.Composed
    params: Mapping[str, Any]
    read: Callable[[Rows], Any] = _rows


#: What a plan yields: statements to run in order; it is sent back what each
#: statement's ``read`` made of its rows (of none, for a statement without
#: a result). Several at once are pipelined: each is sent before the rows of
#: the one before are read, so the server runs a statement while the client
#: encodes the next and reads the last. Pipelined statements must return rows.
Plan: TypeAlias = Generator[tuple[Statement, ...], list[Any], T]


def _pipelined(
    conn: psycopg.Connection[Any] | psycopg.AsyncConnection[Any], statements: tuple[Statement, ...]
) -> bool:
    return (
        len(statements) > 1
        and psycopg.Pipeline.is_supported()
        and conn.pgconn.pipeline_status == pq.PipelineStatus.OFF
    )


def run_sync(conn: psycopg.Connection[Any], plan: Plan[T]) -> T:
    """Run ``plan`` on a synchronous connection, in its current transaction."""
    try:
        statements = next(plan)
        while True:
            results: list[Any] = []
            if _pipelined(conn, statements):
                # Rows as tuples whatever the application set as its row factory.
                cursors = [conn.cursor(row_factory=tuple_row) for _ in statements]
                with conn.pipeline():
                    cursors[0].execute(statements[0].query, statements[0].params)
                    for i, statement in enumerate(statements):
                        rows = cursors[i].fetchall()
                        if i + 1 < len(statements):
                            following = statements[i + 1]
                            cursors[i + 1].execute(following.query, following.params)
                        results.append(statement.read(rows))
            else:
                for statement in statements:
                    with conn.cursor(row_factory=tuple_row) as cur:
                        cur.execute(statement.query, statement.params)
                        rows = cur.fetchall() if cur.description is not None else []
                    results.append(statement.read(rows))
            statements = plan.send(results)
    except StopIteration as done:
        result: T = done.value
        return result
    finally:
        plan.close()


async def run_async(conn: psycopg.AsyncConnection[Any], plan: Plan[T]) -> T:
    """Run ``plan`` on an async connection (Trio's or asyncio's), in its
    current transaction."""
    try:
        statements = next(plan)
        while True:
            results: list[Any] = []
            if _pipelined(conn, statements):
                cursors = [conn.cursor(row_factory=tuple_row) for _ in statements]
                async with conn.pipeline():
                    await cursors[0].execute(statements[0].query, statements[0].params)
                    for i, statement in enumerate(statements):
                        rows = await cursors[i].fetchall()
                        if i + 1 < len(statements):
                            following = statements[i + 1]
                            await cursors[i + 1].execute(following.query, following.params)
                        results.append(statement.read(rows))
            else:
                for statement in statements:
                    async with conn.cursor(row_factory=tuple_row) as cur:
                        await cur.execute(statement.query, statement.params)
                        rows = await cur.fetchall() if cur.description is not None else []
                    results.append(statement.read(rows))
            statements = plan.send(results)
    except StopIteration as done:
        result: T = done.value
        return result
    finally:
        plan.close()


def needs_own_transaction(conn: psycopg.Connection[Any] | psycopg.AsyncConnection[Any]) -> bool:
    """Whether a call on ``conn`` must open a transaction of its own: in
    autocommit with none open, each statement would commit by itself.
    Otherwise the call joins the caller's transaction (open, or begun
    implicitly by psycopg) and commits nothing."""
    return conn.autocommit and conn.info.transaction_status == pq.TransactionStatus.IDLE


def in_transaction_sync(conn: psycopg.Connection[Any], plan: Plan[T]) -> T:
    """:func:`run_sync` in the caller's transaction, or one of its own."""
    if needs_own_transaction(conn):
        with conn.transaction():
            return run_sync(conn, plan)
    return run_sync(conn, plan)


async def in_transaction_async(conn: psycopg.AsyncConnection[Any], plan: Plan[T]) -> T:
    """:func:`run_async` in the caller's transaction, or one of its own."""
    if needs_own_transaction(conn):
        async with conn.transaction():
            return await run_async(conn, plan)
    return await run_async(conn, plan)


# -- the plans ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Target:
    """Where plans write: a schema's queries and its NOTIFY channel."""

    queries: Queries
    channel: str


def _column(params: dict[str, Any], name: str, values: list[Any]) -> None:
    """``values`` as the array parameter ``name``, or, when they are all
    equal, as the one value ``name_all`` with an empty array."""
    first = values[0]
    if values.count(first) == len(values):
        params[name] = []
        params[f"{name}_all"] = first
    else:
        params[name] = values
        params[f"{name}_all"] = None


def upsert_params(
    items: Sequence[PreparedObject], now: datetime | None, process_existing: bool, channel: str
) -> dict[str, Any]:
    params: dict[str, Any] = {
        "object_id": [i.object_id for i in items],
        "object": [i.encoded.decode() for i in items],
        "hash": [i.hash for i in items],
        "now": now,
        "process_existing": process_existing,
        "channel": channel,
    }
    _column(params, "kind", [i.kind for i in items])
    _column(params, "namespace", [i.namespace for i in items])
    _column(params, "metadata", [i.metadata.decode() for i in items])
    _column(params, "tags", [msgspec.json.encode(i.tags).decode() for i in items])
    _column(params, "max_attempts", [i.max_attempts for i in items])
    return params


def _keys(items: Sequence[PreparedObject]) -> dict[str, list[str]]:
    return {"kind": [i.kind for i in items], "object_id": [i.object_id for i in items]}


def fresh_plan(
    target: Target, items: list[PreparedObject], params: UpsertParams
) -> Plan[list[PreparedObject]]:
    """``items`` less those older than their stored row, by the stale check;
    the stored rows stay locked until the transaction ends, so that what
    was compared is what gets replaced."""
    if params.is_stale is None:
        return items
    (rows,) = yield (Statement(target.queries["lock_existing"], _keys(items)),)
    stored = {(r[0], r[1]): (r[2].encode(), bytes(r[3])) for r in rows}
    fresh: list[PreparedObject] = []
    for item in items:
        old = stored.get((item.kind, item.object_id))
        if old is not None and old[1] != item.hash and params.is_stale(item, old[0]):
            continue
        fresh.append(item)
    return fresh


def upsert_quiet_plan(
    target: Target, items: list[PreparedObject], params: UpsertParams
) -> Plan[None]:
    """Write ``items`` and read nothing back (informer batches)."""
    to_write = yield from fresh_plan(target, items, params)
    if to_write:
        yield (
            Statement(
                target.queries["upsert_quiet"],
                upsert_params(to_write, params.now, params.process_existing, target.channel),
            ),
        )


#: Most objects one upsert statement carries; a bulk inform runs several in
#: its one transaction (arrays of a few thousand keep each statement's
#: memory small, and the round trips few).
UPSERT_CHUNK = 5000


def upsert_plan(
    target: Target, items: list[PreparedObject], params: UpsertParams
) -> Plan[list[InformResult[Any]]]:
    """Write ``items`` (unique by kind and id); one result per item, in order.
    Objects older than the stored ones (see :func:`fresh_plan`) are reported
    unchanged. A bulk inform runs one statement per :data:`UPSERT_CHUNK`
    objects, pipelined."""
    to_write = yield from fresh_plan(target, items, params)
    written: dict[tuple[str, str], InformResult[Any]] = {}
    if to_write:

        def reader(chunk: list[PreparedObject]) -> Callable[[Rows], None]:
            def read(rows: Rows) -> None:
                by_key = {(i.kind, i.object_id): i for i in chunk}
                for columns in rows:
                    key = (columns[0], columns[1])
                    written[key] = InformResult._deferred(  # pyright: ignore[reportPrivateUsage]
                        row_from_written, by_key[key], columns, not columns[12], True
                    )

            return read

        yield tuple(
            Statement(
                target.queries["upsert"],
                upsert_params(chunk, params.now, params.process_existing, target.channel),
                reader(chunk),
            )
            for chunk in (
                to_write[i : i + UPSERT_CHUNK] for i in range(0, len(to_write), UPSERT_CHUNK)
            )
        )
    if len(written) == len(items):
        return [written[(i.kind, i.object_id)] for i in items]
    missing = [i for i in items if (i.kind, i.object_id) not in written]
    (rows,) = yield (Statement(target.queries["select_existing"], _keys(missing)),)
    for columns in rows:
        row = row_from_columns(columns)
        written[(row.kind, row.object_id)] = InformResult(row, True, False)
    return [written[(i.kind, i.object_id)] for i in items]


def bounded(plan: Plan[T], queries: Queries, lock_timeout: float | None) -> Plan[T]:
    """``plan`` with ``lock_timeout`` for its own statements only, inside a
    transaction that is the caller's: what the caller had set is restored."""
    if lock_timeout is None:
        return (yield from plan)
    (rows,) = yield (
        Statement(queries["scope_lock_timeout"], {"lock_timeout": lock_timeout_ms(lock_timeout)}),
    )
    result = yield from plan
    yield (Statement(queries["set_local_lock_timeout"], {"lock_timeout": rows[0][0]}),)
    return result


def filter_params(flt: ResourceFilter) -> dict[str, Any]:
    """The parameters of the ``resource_filter`` fragment."""
    return {
        "kind": flt.kind,
        "namespace": flt.namespace,
        "states": None if flt.states is None else [s.value for s in flt.states],
        "tags": None if flt.tags is None else list(flt.tags),
        "object_ids": None if flt.object_ids is None else list(flt.object_ids),
        "after_id": flt.after_id,
        "limit": flt.limit,
    }


def change_plan(
    target: Target, change: Change, flt: ResourceFilter, now: datetime | None
) -> Plan[list[ResourceRow[Any]]]:
    """Apply ``change`` to the resources ``flt`` selects; the changed rows, by id."""
    params = filter_params(flt.narrowed(change.states))
    params |= {"now": now, "channel": target.channel}
    query = change.value
    if change.restarts_to is not None:
        query = "restart"
        params["to_state"] = change.restarts_to.value
    (rows,) = yield (Statement(target.queries[query], params),)
    return sorted((row_from_columns(columns) for columns in rows), key=lambda r: r.id)


def request_inform_plan(
    target: Target,
    kind: str,
    *,
    now: datetime | None,
    process_existing: bool,
    options: Mapping[str, Any] | None,
) -> Plan[None]:
    """Ask for a run of ``kind``'s informer on whichever client has it."""
    yield (
        Statement(
            target.queries["request_inform"],
            {
                "kind": kind,
                "now": now,
                "process_existing": process_existing,
                "inform_options": None
                if options is None
                else msgspec.json.encode(options).decode(),
                "channel": target.channel,
            },
        ),
    )
