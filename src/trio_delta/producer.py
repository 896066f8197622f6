"""Inform from applications that do not run Trio: synchronous code and asyncio.

The workers run on Trio, in a client (``open_delta_client``, or ``trio-delta
run``); producing needs none of it. These functions write on the
application's own psycopg connection, with the same statements as the
client, so an object informed here is stored, compared and woken exactly as
one informed by :meth:`Client.inform`::

    with psycopg.connect(dsn) as conn:                 # Django, Flask, a script
        conn.execute("insert into orders ...")
        producer.inform(conn, Order(...))              # commits with the order

    async with await psycopg.AsyncConnection.connect(dsn) as conn:   # asyncio
        await producer.inform_async(conn, Order(...))

Each call runs in the caller's transaction when one is open (psycopg opens
one with the first statement of a connection not in autocommit) and commits
nothing itself: the resource is written, and the workers woken (by
``NOTIFY``), when the caller commits; a rollback leaves no trace. On a
connection in autocommit each call is a transaction of its own.

Time comes from the database (its statement time), since no client clock
runs here. Lock waits follow the connection's own ``lock_timeout``.
Database failures raise :class:`StoreError` (the driver's exception as its
cause); invalid objects raise :class:`ObjectError` before anything is sent.
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import cache
from typing import Any, TypeVar, cast

import psycopg

from ._config import DEFAULT_MAX_ATTEMPTS, check_schema
from ._errors import ConfigError, LockTimeoutError, NotMigratedError
from ._informing import (
    bind_row,
    inform_run_options,
    invalidate_refused,
    object_types,
    prepare_all,
    prepare_all_async,
    results_for,
    stale_check,
)
from ._objects import PreparedObject, check_kind, prepare_object
from ._store.params import Change, ResourceFilter, UpsertParams, dedupe
from ._store.postgres.columns import row_from_columns
from ._store.postgres.connections import notify_channel, store_error
from ._store.postgres.runners import Plan, Statement, in_transaction_async, in_transaction_sync
from ._store.postgres.statements import Target, change_plan, request_inform_plan, upsert_plan
from ._store.queries import Queries
from ._types import InformOptions, InformOpts, InformResult, ResourceRow
from ._util import fixup_module_metadata

__all__ = [
    "inform",
    "inform_async",
    "inform_many",
    "inform_many_async",
    "invalidate",
    "invalidate_async",
    "schedule_inform",
    "schedule_inform_async",
]

T = TypeVar("T")
R = TypeVar("R")


@cache
def _target(schema: str) -> Target:
    check_schema(schema)
    return Target(Queries(schema), notify_channel(schema))


def _sync(conn: object, name: str) -> psycopg.Connection[Any]:
    if isinstance(conn, psycopg.Connection):
        return cast("psycopg.Connection[Any]", conn)
    if isinstance(conn, psycopg.AsyncConnection):
        raise ConfigError(f"{name}() takes a synchronous psycopg Connection; await {name}_async()")
    raise ConfigError(f"{name}() takes a psycopg Connection, got {type(conn).__name__}")


def _async(conn: object, name: str) -> psycopg.AsyncConnection[Any]:
    if isinstance(conn, psycopg.AsyncConnection):
        return cast("psycopg.AsyncConnection[Any]", conn)
    if isinstance(conn, psycopg.Connection):
        plain = name.removesuffix("_async")
        raise ConfigError(f"{name}() takes a psycopg AsyncConnection; call {plain}()")
    raise ConfigError(f"{name}() takes a psycopg AsyncConnection, got {type(conn).__name__}")


def _failed(exc: psycopg.Error | OSError, what: str, schema: str) -> Exception:
    if isinstance(exc, psycopg.errors.UndefinedTable):
        return NotMigratedError(
            f"schema {schema!r} has no trio_delta tables: run "
            f"`trio-delta migrate --schema {schema}`"
        )
    if isinstance(exc, psycopg.errors.LockNotAvailable):
        return LockTimeoutError(
            f"{what} failed: a row stayed locked by another transaction past the "
            "connection's lock_timeout; nothing was written"
        )
    return store_error(exc, what)


def _run_sync(conn: psycopg.Connection[Any], plan: Plan[R], what: str, schema: str) -> R:
    try:
        return in_transaction_sync(conn, plan)
    except (psycopg.Error, OSError) as exc:
        raise _failed(exc, what, schema) from exc


async def _run_async(
    conn: psycopg.AsyncConnection[Any], plan: Plan[R], what: str, schema: str
) -> R:
    try:
        return await in_transaction_async(conn, plan)
    except (psycopg.Error, OSError) as exc:
        raise _failed(exc, what, schema) from exc


# -- inform ---------------------------------------------------------------------


def _upsert(items: list[PreparedObject], schema: str) -> Plan[list[InformResult[Any]]]:
    params = UpsertParams(None, is_stale=stale_check(object_types(items)))
    return upsert_plan(_target(schema), dedupe(items), params)


def inform(
    conn: psycopg.Connection[Any], obj: T, opts: InformOpts | None = None, *, schema: str = "delta"
) -> InformResult[T]:
    """Store ``obj`` as a resource, scheduled to be worked, on ``conn``.

    As :meth:`Client.inform`: an unchanged object (same JSON) is not
    rescheduled, one older than the stored one by its ``compare`` is
    ignored; :class:`ObjectError` for an invalid object, nothing sent.
    """
    sync = _sync(conn, "inform")
    item = prepare_object(obj, opts, default_max_attempts=DEFAULT_MAX_ATTEMPTS)
    results = _run_sync(sync, _upsert([item], schema), "inform", schema)
    return results_for([item], results)[0]


def inform_many(
    conn: psycopg.Connection[Any],
    objs: Iterable[Any],
    opts: InformOpts | None = None,
    *,
    schema: str = "delta",
) -> list[InformResult[Any]]:
    """Store many objects with batched statements; one result per object, in
    input order. One invalid object rejects all, nothing sent
    (:class:`ObjectError`, with the object's position as ``index``)."""
    sync = _sync(conn, "inform_many")
    items = prepare_all(objs, opts, default_max_attempts=DEFAULT_MAX_ATTEMPTS)
    if not items:
        return []
    return results_for(items, _run_sync(sync, _upsert(items, schema), "inform", schema))


async def inform_async(
    conn: psycopg.AsyncConnection[Any],
    obj: T,
    opts: InformOpts | None = None,
    *,
    schema: str = "delta",
) -> InformResult[T]:
    """:func:`inform` on an async connection (asyncio, or Trio's from
    :func:`trio_delta.connect`)."""
    aconn = _async(conn, "inform_async")
    item = prepare_object(obj, opts, default_max_attempts=DEFAULT_MAX_ATTEMPTS)
    results = await _run_async(aconn, _upsert([item], schema), "inform", schema)
    return results_for([item], results)[0]


async def inform_many_async(
    conn: psycopg.AsyncConnection[Any],
    objs: Iterable[Any],
    opts: InformOpts | None = None,
    *,
    schema: str = "delta",
) -> list[InformResult[Any]]:
    """:func:`inform_many` on an async connection."""
    aconn = _async(conn, "inform_many_async")
    items = await prepare_all_async(objs, opts, default_max_attempts=DEFAULT_MAX_ATTEMPTS)
    if not items:
        return []
    return results_for(items, await _run_async(aconn, _upsert(items, schema), "inform", schema))


# -- informer runs and invalidation -----------------------------------------------


def _request(
    kind: str, process_existing: bool, options: InformOptions | None, schema: str
) -> Plan[None]:
    check_kind(kind, error=ConfigError)
    return request_inform_plan(
        _target(schema),
        kind,
        now=None,
        process_existing=bool(process_existing),
        options=inform_run_options(options),
    )


def schedule_inform(
    conn: psycopg.Connection[Any],
    kind: str,
    process_existing: bool = False,
    options: InformOptions | None = None,
    *,
    schema: str = "delta",
) -> None:
    """Run ``kind``'s informer as soon as possible, on whichever client has
    its controller (as :meth:`Client.schedule_inform`), once ``conn``'s
    transaction commits."""
    sync = _sync(conn, "schedule_inform")
    _run_sync(sync, _request(kind, process_existing, options, schema), "schedule_inform", schema)


async def schedule_inform_async(
    conn: psycopg.AsyncConnection[Any],
    kind: str,
    process_existing: bool = False,
    options: InformOptions | None = None,
    *,
    schema: str = "delta",
) -> None:
    """:func:`schedule_inform` on an async connection."""
    aconn = _async(conn, "schedule_inform_async")
    plan = _request(kind, process_existing, options, schema)
    await _run_async(aconn, plan, "schedule_inform", schema)


def _invalidate(item: PreparedObject, schema: str) -> Plan[ResourceRow[Any]]:
    """Expire the synced resource of ``item``, or raise why not."""
    target = _target(schema)
    flt = ResourceFilter(kind=item.kind, object_ids=(item.object_id,))
    rows = yield from change_plan(target, Change.INVALIDATE, flt, None)
    if rows:
        return rows[0]
    (found,) = yield (
        Statement(target.queries["get_resource"], {"kind": item.kind, "object_id": item.object_id}),
    )
    raise invalidate_refused(item, row_from_columns(found[0]) if found else None)


def invalidate(
    conn: psycopg.Connection[Any], obj: object, *, schema: str = "delta"
) -> ResourceRow[Any]:
    """Expire the synced resource of ``obj`` so it is worked again (as
    :meth:`Client.invalidate`); :class:`ResourceStateError` when there is
    none or it is not synced."""
    sync = _sync(conn, "invalidate")
    item = prepare_object(obj, None, default_max_attempts=DEFAULT_MAX_ATTEMPTS)
    return bind_row(item, _run_sync(sync, _invalidate(item, schema), "invalidate", schema))


async def invalidate_async(
    conn: psycopg.AsyncConnection[Any], obj: object, *, schema: str = "delta"
) -> ResourceRow[Any]:
    """:func:`invalidate` on an async connection."""
    aconn = _async(conn, "invalidate_async")
    item = prepare_object(obj, None, default_max_attempts=DEFAULT_MAX_ATTEMPTS)
    row = await _run_async(aconn, _invalidate(item, schema), "invalidate", schema)
    return bind_row(item, row)


fixup_module_metadata(__name__, globals())
del fixup_module_metadata
