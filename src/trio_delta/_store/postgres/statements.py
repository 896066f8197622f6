"""The statements of informing and of changing resources, as plans.

A plan is a generator that yields each :class:`~.runners.Statement` and is
sent what its rows made (see :mod:`.runners`, which run them on any kind of
psycopg connection). The Postgres store's queue, the client's
``inform_tx`` on an application's connection and :mod:`trio_delta.producer`
all run the same plans.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeAlias, TypeVar

import msgspec
import psycopg
from psycopg.rows import tuple_row

from ..._objects import PreparedObject
from ..._types import InformResult, ResourceRow
from ..params import Change, ResourceFilter, UpsertParams, dedupe
from ..queries import Queries
from .columns import (
    array_or_all,
    pack_bytea_array,
    pack_text_array,
    row_from_columns,
    row_from_written,
    sends_packed,
)
from .connections import lock_timeout_ms
from .runners import Plan, Rows, Statement, binary_rows, rows_as_they_are, run_async

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Target:
    """Where plans write: a schema's queries and its NOTIFY channel."""

    queries: Queries
    channel: str


def _json_list(tags: tuple[str, ...]) -> str:
    return msgspec.json.encode(tags).decode() if tags else "[]"  # most have none


def upsert_params(
    items: Sequence[PreparedObject],
    now: datetime | None,
    process_existing: bool,
    channel: str,
    *,
    packed: bool = False,
    claim_by: str | None = None,
) -> dict[str, Any]:
    """The upsert's parameters for ``items``; ``packed``: their ids,
    objects and hashes as packed arrays, for a store connection that
    :func:`~.columns.sends_packed`."""
    params: dict[str, Any] = {
        "object_id": pack_text_array([i.object_id.encode() for i in items])
        if packed
        else [i.object_id for i in items],
        "object": pack_text_array([i.encoded for i in items])
        if packed
        else [i.encoded.decode() for i in items],
        "hash": pack_bytea_array([i.hash for i in items]) if packed else [i.hash for i in items],
        "now": now,
        "process_existing": process_existing,
        "channel": channel,
        "claim_by": claim_by,
    }
    array_or_all(params, "kind", [i.kind for i in items])
    array_or_all(params, "namespace", [i.namespace for i in items])
    array_or_all(params, "metadata", [i.metadata.decode() for i in items])
    array_or_all(params, "tags", [_json_list(i.tags) for i in items])
    array_or_all(params, "max_attempts", [i.max_attempts for i in items])
    array_or_all(params, "priority", [i.priority for i in items])
    array_or_all(params, "run_at", [i.run_at for i in items])
    # The statement's objects all set a priority, or none does (see upsert_batches).
    params["keep_priority"] = not items[0].priority_set
    return params


def upsert_one_params(
    item: PreparedObject,
    now: datetime | None,
    process_existing: bool,
    channel: str,
    claim_by: str | None,
) -> dict[str, Any]:
    """The parameters of ``upsert_one``: :func:`upsert_params` of one
    object, as scalars."""
    return {
        "kind": item.kind,
        "object_id": item.object_id,
        "namespace": item.namespace,
        "object": item.encoded.decode(),
        "hash": item.hash,
        "metadata": item.metadata.decode(),
        "tags": _json_list(item.tags),
        "max_attempts": item.max_attempts,
        "priority": item.priority,
        "run_at": item.run_at,
        "now": now,
        "process_existing": process_existing,
        "channel": channel,
        "claim_by": claim_by,
        "keep_priority": not item.priority_set,
    }


def upsert_batches(items: list[PreparedObject]) -> list[list[PreparedObject]]:
    """``items`` as the objects of each upsert statement: at most
    :data:`UPSERT_CHUNK`, and either all giving a priority or none (one
    without keeps the stored one; a statement says which for all its rows)."""
    groups = [items]
    if any(i.priority_set for i in items) and not all(i.priority_set for i in items):
        groups = [[i for i in items if i.priority_set], [i for i in items if not i.priority_set]]
    return [g[n : n + UPSERT_CHUNK] for g in groups for n in range(0, len(g), UPSERT_CHUNK)]


def _keys(items: Sequence[PreparedObject]) -> dict[str, list[str]]:
    return {"kind": [i.kind for i in items], "object_id": [i.object_id for i in items]}


Stored: TypeAlias = dict[tuple[str, str], ResourceRow[Any]]


def fresh_plan(
    target: Target, items: list[PreparedObject], params: UpsertParams
) -> Plan[tuple[list[PreparedObject], Stored]]:
    """``items`` less those older than their stored row, by the stale check,
    and the stored rows read for it (none without a stale check); they stay
    locked until the transaction ends, so that what was compared is what
    gets replaced."""
    if params.is_stale is None:
        return items, {}
    (rows,) = yield (Statement(target.queries["lock_existing"], _keys(items)),)
    stored: Stored = {}
    for columns in rows:
        row = row_from_columns(columns)
        stored[(row.kind, row.object_id)] = row
    fresh: list[PreparedObject] = []
    for item in items:
        old = stored.get((item.kind, item.object_id))
        if old is not None and old.hash != item.hash and params.is_stale(item, old.encoded_object):
            continue
        fresh.append(item)
    return fresh, stored


def upsert_quiet_plan(
    target: Target, items: list[PreparedObject], params: UpsertParams, *, packed: bool = False
) -> Plan[None]:
    """Write ``items`` and read nothing back (informer batches); ``packed``
    as :func:`upsert_params`."""
    to_write, _ = yield from fresh_plan(target, items, params)
    if to_write:
        yield _upserts(
            target, "upsert_quiet", to_write, params, lambda batch: rows_as_they_are, packed=packed
        )


def _upserts(
    target: Target,
    query: str,
    items: list[PreparedObject],
    params: UpsertParams,
    reader: Callable[[list[PreparedObject]], Callable[[Rows], Any]],
    *,
    packed: bool = False,
) -> tuple[Statement, ...]:
    """The statements of ``query`` writing ``items`` (see :func:`upsert_batches`),
    each read by ``reader(its batch)``. The writes end a transaction the
    runner opened: what a plan reads after them (objects neither written
    nor read first) is as stored."""
    if query == "upsert" and len(items) == 1:
        # One object (Client.inform's usual case): scalars, not arrays.
        one = upsert_one_params(
            items[0], params.now, params.process_existing, target.channel, params.claim_by
        )
        return (Statement(target.queries["upsert_one"], one, reader(items), last=True),)
    batches = upsert_batches(items)
    return tuple(
        Statement(
            target.queries[query],
            upsert_params(
                batch,
                params.now,
                params.process_existing,
                target.channel,
                packed=packed,
                claim_by=params.claim_by,
            ),
            reader(batch),
            last=n == len(batches) - 1,
        )
        for n, batch in enumerate(batches)
    )


#: Most objects one upsert statement carries; a bulk inform runs several in
#: its one transaction (arrays of a few thousand keep each statement's
#: memory small, and the round trips few).
UPSERT_CHUNK = 5000


def upsert_plan(
    target: Target, items: list[PreparedObject], params: UpsertParams, *, packed: bool = False
) -> Plan[list[InformResult[Any]]]:
    """Write ``items`` (unique by kind and id); one result per item, in order.
    Objects older than the stored ones (see :func:`fresh_plan`) are reported
    unchanged. A bulk inform runs one statement per :data:`UPSERT_CHUNK`
    objects, pipelined. ``packed`` as :func:`upsert_params`."""
    to_write, stored = yield from fresh_plan(target, items, params)
    written: Written = {}
    if to_write:
        yield _upserts(target, "upsert", to_write, params, _reader(written), packed=packed)
    fresh = {(i.kind, i.object_id) for i in to_write}
    for key, row in stored.items():
        if key not in written:  # unchanged, or older than the stored row
            written[key] = InformResult(row, True, False, stale=key not in fresh)
    return (yield from _unchanged_plan(target, items, written))


Written: TypeAlias = dict[tuple[str, str], InformResult[Any]]


def _reader(written: Written) -> Callable[[list[PreparedObject]], Callable[[Rows], None]]:
    """The ``read`` of an upsert statement writing a batch: each row
    returned, as a result (built when first read) put in ``written``."""

    def reader(batch: list[PreparedObject]) -> Callable[[Rows], None]:
        def read(rows: Rows) -> None:
            by_key = {(i.kind, i.object_id): i for i in batch}
            for columns in rows:
                key = (columns[0], columns[1])
                written[key] = InformResult._deferred(  # pyright: ignore[reportPrivateUsage]
                    row_from_written, by_key[key], columns, not columns[12], True
                )

        return read

    return reader


def _unchanged_plan(
    target: Target, items: list[PreparedObject], written: Written
) -> Plan[list[InformResult[Any]]]:
    """The results of ``items``, from ``written`` or else as stored: an
    upsert returns no row for an object it left unchanged (or one another
    transaction inserted meanwhile)."""
    if len(written) < len(items):
        missing = [i for i in items if (i.kind, i.object_id) not in written]
        (rows,) = yield (Statement(target.queries["select_existing"], _keys(missing)),)
        for columns in rows:
            row = row_from_columns(columns)
            written[(row.kind, row.object_id)] = InformResult(row, True, False)
    return [written[(i.kind, i.object_id)] for i in items]


async def upsert_overlapped(
    conn: psycopg.AsyncConnection[Any],
    target: Target,
    next_chunk: Callable[[], Awaitable[list[PreparedObject] | None]],
    params: UpsertParams,
    unread: list[PreparedObject],
) -> list[InformResult[Any]]:
    """The upserts of each chunk ``next_chunk()`` gives, in the transaction
    open on ``conn``; results for every chunk's distinct items, in order.
    ``unread`` is kept as the objects whose statements an error raised
    now would come from (sent, and not yet answered).

    Pipelined: a chunk's statements go out before the rows of the chunk
    before are read, so the server writes one chunk while the client
    reads the last, and the next is prepared while the server writes. No
    object may be in two chunks; without a stale check (nothing is read
    before writing)."""
    binary = binary_rows(conn)
    packed = sends_packed(conn)
    written: Written = {}
    reader = _reader(written)
    items: list[PreparedObject] = []
    in_flight: list[tuple[psycopg.AsyncCursor[Any], Statement]] = []
    async with conn.pipeline() as pipeline:
        while True:
            chunk = await next_chunk()
            statements: tuple[Statement, ...] = ()
            unique: list[PreparedObject] = []
            if chunk is not None:
                # Built while the server may still write the last chunk.
                unique = dedupe(chunk)
                items += unique
                statements = _upserts(target, "upsert", unique, params, reader, packed=packed)
            if in_flight:
                # psycopg's fetch would wait for every statement sent; a
                # sync now waits for the last chunk's only.
                await pipeline.sync()
            unread[:] = unique
            sent: list[tuple[psycopg.AsyncCursor[Any], Statement]] = []
            for statement in statements:
                cur = conn.cursor(row_factory=tuple_row, binary=binary)
                await cur.execute(statement.query, statement.params)
                sent.append((cur, statement))
            for cur, statement in in_flight:
                statement.read(await cur.fetchall())
            in_flight = sent
            if chunk is None:
                break
    return await run_async(conn, _unchanged_plan(target, items, written))


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
        "id_contains": flt.id_contains,
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
