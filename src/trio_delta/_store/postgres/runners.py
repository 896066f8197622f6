"""Running plans on any psycopg connection.

The client's pool connections run on Trio; an application's own
connection may be synchronous (a web framework's thread, a script) or
asyncio's. The statements an inform runs, and how it reads their rows, must
not be written once per kind of connection. So they are *plans*
(:mod:`.statements`): generators that yield each :class:`Statement` and are
sent its rows; a runner per connection kind (:func:`run_sync`,
:func:`run_async`) executes them.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Mapping
from dataclasses import dataclass
from typing import Any, TypeAlias, TypeVar

import psycopg
from psycopg import pq, sql
from psycopg.rows import tuple_row

from ..queries import NamedQuery

T = TypeVar("T")
Rows: TypeAlias = list[tuple[Any, ...]]


def returns_rows(cur: psycopg.Cursor[Any] | psycopg.AsyncCursor[Any]) -> bool:
    """Whether ``cur``'s statement returned rows (zero or more): what
    ``description is not None`` says, without building a column object per
    column to say it (a tenth of a single inform's client time)."""
    result = cur.pgresult
    return result is not None and (result.nfields > 0 or result.status == pq.ExecStatus.TUPLES_OK)


def rows_as_they_are(rows: Rows) -> Rows:
    return rows


@dataclass(frozen=True, slots=True)
class Statement:
    """One statement of a plan, and what to make of its rows (``read``;
    by default the rows themselves)."""

    query: NamedQuery
    params: Mapping[str, Any]
    read: Callable[[Rows], Any] = rows_as_they_are
    last: bool = False
    """No statement of its plan comes after this one (a transaction the
    runner opened commits with it)."""


#: What a plan yields: statements to run in order; it is sent back what each
#: statement's ``read`` made of its rows (of none, for a statement without
#: a result). Several at once are pipelined: each is sent before the rows of
#: the one before are read, so the server runs a statement while the client
#: reads the last. Of several at once, all but the last must return rows.
Plan: TypeAlias = Generator[tuple[Statement, ...], list[Any], T]


def _pipelined(
    conn: psycopg.Connection[Any] | psycopg.AsyncConnection[Any], statements: tuple[Statement, ...]
) -> bool:
    return (
        len(statements) > 1
        and psycopg.Pipeline.is_supported()
        and conn.pgconn.pipeline_status == pq.PipelineStatus.OFF
    )


#: Statements of a pipelined plan sent ahead of the rows read: with two,
#: the server has the next one queued when it finishes one (with one, it
#: sat idle while the client read the rows of the last and sent the next).
IN_FLIGHT = 2

#: Transaction control, for the runners here and the store's connections.
BEGIN = sql.SQL("begin")
COMMIT = sql.SQL("commit")
ROLLBACK = sql.SQL("rollback")


@dataclass(slots=True)
class _Own:
    """The state of a transaction a runner opened for its plan (see
    :func:`in_transaction_async`): ``begin`` goes with the next statements,
    ``commit`` once sent with the statements marked ``last``."""

    begin: bool = True
    commit: bool = False

    def wrap(self, statements: tuple[Statement, ...]) -> tuple[bool, bool]:
        """Whether to send BEGIN before, and COMMIT after, ``statements``."""
        if self.commit:  # committed: what follows runs by itself
            return False, False
        begin, self.begin = self.begin, False
        self.commit = statements[-1].last
        return begin, self.commit


def binary_rows(conn: psycopg.Connection[Any] | psycopg.AsyncConnection[Any]) -> bool:
    """Whether a plan's cursors on ``conn`` read rows in binary: a bulk
    inform reads back a row per object, whose timestamps and numbers load a
    third faster so. Not on a connection whose cursors bind parameters on
    the client (Django's default; a common setting behind poolers): those
    cannot return binary rows."""
    return not issubclass(conn.cursor_factory, psycopg.ClientCursor | psycopg.AsyncClientCursor)


def run_sync(conn: psycopg.Connection[Any], plan: Plan[T], own: _Own | None = None) -> T:
    """Run ``plan`` on a synchronous connection, in its current transaction
    (in its own with ``own``, from :func:`in_transaction_sync`)."""
    binary = binary_rows(conn)
    try:
        statements = next(plan)
        while True:
            results: list[Any] = []
            # Rows as tuples whatever the application set as its row factory.
            cursors = [conn.cursor(row_factory=tuple_row, binary=binary) for _ in statements]
            begin, commit = own.wrap(statements) if own is not None else (False, False)
            if (
                begin or commit or _pipelined(conn, statements)
            ) and psycopg.Pipeline.is_supported():
                with conn.pipeline():
                    if begin:
                        conn.execute(BEGIN)
                    # Several statements: IN_FLIGHT are sent before the rows
                    # of the first are read, so the server works while we read.
                    sent = min(IN_FLIGHT, len(statements))
                    for cur, statement in zip(cursors[:sent], statements[:sent], strict=True):
                        cur.execute(statement.query, statement.params)
                    for i, statement in enumerate(statements[:-1]):
                        rows = cursors[i].fetchall()
                        if sent < len(statements):
                            following = statements[sent]
                            cursors[sent].execute(following.query, following.params)
                            sent += 1
                        results.append(statement.read(rows))
                    if commit:
                        conn.execute(COMMIT)
                # The last statement's rows come with the pipeline's end.
                last = cursors[-1]
                rows = last.fetchall() if returns_rows(last) else []
                results.append(statements[-1].read(rows))
            else:
                if begin:
                    conn.execute(BEGIN)
                for cur, statement in zip(cursors, statements, strict=True):
                    cur.execute(statement.query, statement.params)
                    rows = cur.fetchall() if returns_rows(cur) else []
                    results.append(statement.read(rows))
                if commit:
                    conn.execute(COMMIT)
            statements = plan.send(results)
    except StopIteration as done:
        if own is not None and not own.begin and not own.commit:
            conn.execute(COMMIT)
        result: T = done.value
        return result
    except BaseException:
        if own is not None and conn.info.transaction_status != pq.TransactionStatus.IDLE:
            conn.execute(ROLLBACK)
        raise
    finally:
        plan.close()


async def run_async(
    conn: psycopg.AsyncConnection[Any], plan: Plan[T], own: _Own | None = None
) -> T:
    """Run ``plan`` on an async connection (Trio's or asyncio's), in its
    current transaction (in its own with ``own``, from
    :func:`in_transaction_async`)."""
    binary = binary_rows(conn)
    try:
        statements = next(plan)
        while True:
            results: list[Any] = []
            cursors = [conn.cursor(row_factory=tuple_row, binary=binary) for _ in statements]
            begin, commit = own.wrap(statements) if own is not None else (False, False)
            if (
                begin or commit or _pipelined(conn, statements)
            ) and psycopg.Pipeline.is_supported():
                async with conn.pipeline():
                    if begin:
                        await conn.execute(BEGIN)
                    # As run_sync: IN_FLIGHT at once.
                    sent = min(IN_FLIGHT, len(statements))
                    for cur, statement in zip(cursors[:sent], statements[:sent], strict=True):
                        await cur.execute(statement.query, statement.params)
                    for i, statement in enumerate(statements[:-1]):
                        rows = await cursors[i].fetchall()
                        if sent < len(statements):
                            following = statements[sent]
                            await cursors[sent].execute(following.query, following.params)
                            sent += 1
                        results.append(statement.read(rows))
                    if commit:
                        await conn.execute(COMMIT)
                last = cursors[-1]
                rows = await last.fetchall() if returns_rows(last) else []
                results.append(statements[-1].read(rows))
            else:
                if begin:
                    await conn.execute(BEGIN)
                for cur, statement in zip(cursors, statements, strict=True):
                    await cur.execute(statement.query, statement.params)
                    rows = await cur.fetchall() if returns_rows(cur) else []
                    results.append(statement.read(rows))
                if commit:
                    await conn.execute(COMMIT)
            statements = plan.send(results)
    except StopIteration as done:
        if own is not None and not own.begin and not own.commit:
            await conn.execute(COMMIT)
        result: T = done.value
        return result
    except BaseException:
        if own is not None and conn.info.transaction_status != pq.TransactionStatus.IDLE:
            await conn.execute(ROLLBACK)
        raise
    finally:
        plan.close()


def needs_own_transaction(conn: psycopg.Connection[Any] | psycopg.AsyncConnection[Any]) -> bool:
    """Whether a call on ``conn`` must open a transaction of its own: in
    autocommit with none open, each statement would commit by itself.
    Otherwise the call joins the caller's transaction (open, or begun
    implicitly by psycopg) and commits nothing."""
    return conn.autocommit and conn.info.transaction_status == pq.TransactionStatus.IDLE


# A transaction of the runner's own is begun and committed by statements
# sent with the plan's (not psycopg's transaction(), which waits for BEGIN
# and for COMMIT): a plan that reads, then writes (a stale check) takes two
# round trips, BEGIN with the read and COMMIT with the write.


def in_transaction_sync(conn: psycopg.Connection[Any], plan: Plan[T]) -> T:
    """:func:`run_sync` in the caller's transaction, or one of its own."""
    return run_sync(conn, plan, _Own() if needs_own_transaction(conn) else None)


async def in_transaction_async(conn: psycopg.AsyncConnection[Any], plan: Plan[T]) -> T:
    """:func:`run_async` in the caller's transaction, or one of its own."""
    return await run_async(conn, plan, _Own() if needs_own_transaction(conn) else None)
