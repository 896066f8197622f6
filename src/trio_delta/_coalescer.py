"""Concurrent ``Client.inform`` calls share statements.

A web service informs once per request, from many tasks at once; one
statement per call makes the database's round trips the limit. Calls that
arrive while a statement is in flight wait together and go out as the next
statement, as the completer batches outcomes: an idle client pays no
batching delay, a busy one writes many objects per round trip.

There is no writer task: the first caller to find no statement in flight
writes the batch waiting then (its own object and the others'), hands
every caller its own result, and passes the pen to the first caller still
waiting. A call therefore never serves others' batches after its own, and
nothing is left to stop when the client stops.

Each call keeps its own semantics: its own result, or its own error. A
batch the server refuses (a row held past the lock timeout, a constraint
or trigger of the application's) is written again one object at a time,
so only the call whose object caused it fails.

A call that finds the client idle claims its row in the same statement
(``WriteClaims``): its work then starts as the call returns, with no claim
round trip of the fetcher's after it.
"""

from __future__ import annotations

import copy
from collections import deque
from collections.abc import Callable
from datetime import datetime
from typing import Any, Protocol

import outcome
import trio

from ._errors import LockTimeoutError, StoreError
from ._informing import DecodeAs, object_types, stale_check
from ._objects import PreparedObject
from ._store.params import UpsertParams
from ._store.port import QueueStore
from ._types import InformResult, Resource


class WriteClaims(Protocol):
    """Whether an inform may claim the row it writes, and where the row
    goes if it did (the engine)."""

    client_id: str

    def reserve_write_claim(self, kind: str, namespace: str) -> bool: ...

    def settle_write_claim(
        self,
        kind: str,
        namespace: str,
        row: Resource[Any] | None,
        claimed_at: datetime,
        *,
        unsure_of: str | None = None,
    ) -> None: ...


#: SQLSTATE classes and codes of errors one object's row or data can cause:
#: integrity constraints (23), data exceptions (22), an exception raised by
#: a trigger or function (P0001), an assertion (P0004).
OBJECT_ERRORS = ("23", "22", "P0001", "P0004")


def _caused_by_an_object(exc: StoreError) -> bool:
    """Whether one object of a refused batch may have caused ``exc``: a row
    held past the lock timeout, or the server refusing one's data."""
    if isinstance(exc, LockTimeoutError):
        return True
    return (
        not exc.maybe_applied
        and exc.sqlstate is not None
        and exc.sqlstate.startswith(OBJECT_ERRORS)
    )


def _copied(
    result: outcome.Outcome[InformResult[Any]] | None,
) -> outcome.Outcome[InformResult[Any]]:
    """A result of its own for a call that shared ``result``'s write."""
    if isinstance(result, outcome.Error):
        return outcome.Error(copy.copy(result.error))
    assert isinstance(result, outcome.Value)
    return outcome.Value(_own_copy(result.value))


def _own_copy(result: InformResult[Any]) -> InformResult[Any]:
    return InformResult(result.resource, result.already_exists, result.changed, stale=result.stale)


class _Call:
    __slots__ = ("item", "result", "turn")

    def __init__(self, item: PreparedObject) -> None:
        self.item = item
        self.result: outcome.Outcome[InformResult[Any]] | None = None
        # Set when the result is in, or when it is this call's turn to write.
        self.turn = trio.Event()


class InformCoalescer:
    def __init__(
        self,
        queue: QueueStore,
        now: Callable[[], Any],
        *,
        batch_size: int,
        decode_as: DecodeAs,
        claims: WriteClaims | None = None,
    ) -> None:
        self._queue = queue
        self._claims = claims
        self._now = now
        self._batch_size = batch_size
        self._decode_as = decode_as
        self._waiting: deque[_Call] = deque()
        self._writing = False
        self.statements = 0  # for tests and profiling

    async def upsert(self, item: PreparedObject) -> InformResult[Any]:
        """Write ``item`` (alone or with concurrent calls' items); its result."""
        call = _Call(item)
        self._waiting.append(call)
        while True:
            if call.result is not None:
                return call.result.unwrap()
            if not self._writing:
                await self._write_batch()
                continue
            call.turn = trio.Event()
            try:
                await call.turn.wait()  # our result is in, or it is our turn
            except trio.Cancelled:
                if call in self._waiting:
                    self._waiting.remove(call)  # never sent: nothing written
                    self._pass_on()
                raise

    async def _write_batch(self) -> None:
        self._writing = True
        count = min(self._batch_size, len(self._waiting))
        batch = [self._waiting.popleft() for _ in range(count)]
        try:
            # Others' objects ride on this call: a cancel of this call must
            # not undo theirs. The statement is bounded by the lock timeout.
            with trio.CancelScope(shield=True):
                await self._write(batch)
        finally:
            self._writing = False
            for call in batch:
                call.turn.set()
            self._pass_on()
        await trio.lowlevel.checkpoint_if_cancelled()

    def _pass_on(self) -> None:
        """The first waiting call writes next."""
        if self._waiting and not self._writing:
            self._waiting[0].turn.set()

    async def _write(self, batch: list[_Call]) -> None:
        items = [call.item for call in batch]
        try:
            results = await self._upsert(items)
        except StoreError as exc:
            if len(batch) == 1 or not _caused_by_an_object(exc):
                # One call's own error; or one no object caused (the
                # database read-only, a connection lost): every call gets it.
                for call in batch:
                    call.result = outcome.Error(exc if len(batch) == 1 else copy.copy(exc))
                return
            # One error does not say which object caused it: each goes
            # again alone, so that only its own call fails. An object given
            # twice goes once, as its last version, as in the shared statement.
            last = {(call.item.kind, call.item.object_id): call for call in batch}
            for call in last.values():
                call.result = await outcome.acapture(self._upsert_one, call.item)
            for call in batch:
                if call.result is None:  # overtaken by a later version of its object
                    call.result = _copied(last[(call.item.kind, call.item.object_id)].result)
            return
        except Exception as exc:
            for call in batch:
                call.result = outcome.Error(exc if len(batch) == 1 else copy.copy(exc))
            return
        # One result per distinct object, in order of first appearance.
        keys = list(dict.fromkeys((call.item.kind, call.item.object_id) for call in batch))
        by_key = dict(zip(keys, results, strict=True))
        handed: set[tuple[str, str]] = set()
        for call in batch:
            key = (call.item.kind, call.item.object_id)
            result = by_key[key]
            if key in handed:  # the same object informed twice: a result each
                result = _own_copy(result)
            handed.add(key)
            call.result = outcome.Value(result)

    async def _upsert(self, items: list[PreparedObject]) -> list[InformResult[Any]]:
        self.statements += 1
        is_stale = stale_check(object_types(items), self._decode_as)
        claims = self._claims
        kind, namespace = items[0].kind, items[0].namespace
        if claims is None or len(items) > 1 or not claims.reserve_write_claim(kind, namespace):
            return await self._queue.upsert(items, UpsertParams(self._now(), is_stale=is_stale))
        row: Resource[Any] | None = None
        unsure_of: str | None = None
        now = self._now()
        try:
            params = UpsertParams(now, is_stale=is_stale, claim_by=claims.client_id)
            results = await self._queue.upsert(items, params)
            if results[0].changed:
                row = results[0].resource
            return results
        except StoreError as exc:
            if exc.maybe_applied:  # committed or not, we cannot tell
                unsure_of = items[0].object_id
            raise
        finally:
            claims.settle_write_claim(kind, namespace, row, now, unsure_of=unsure_of)

    async def _upsert_one(self, item: PreparedObject) -> InformResult[Any]:
        (result,) = await self._upsert([item])
        return result
