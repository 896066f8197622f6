"""The resource queue of the memory store: upsert, claim, complete.

It follows the Postgres adapter (the reference semantics) rule for rule,
including what a test can see (see :mod:`.tables`). Every method passes a
checkpoint first, so code on the memory store meets the same scheduling
points as on Postgres.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import replace
from datetime import datetime
from typing import Any

import psycopg
import trio

from ..._errors import ConfigError, StoreError
from ..._objects import PreparedObject
from ..._types import CLAIMABLE_STATES, InformResult, Resource, ResourceRow, ResourceState
from ..params import (
    DUE_LATER,
    AppliedOutcome,
    ClaimBudget,
    ClaimRequest,
    Completed,
    Outcome,
    OutcomeKind,
    UpsertParams,
    claim_order,
    dedupe,
    rate_limited,
    upsert_one_by_one,
)
from ..port import AppConnection, StoreTransaction
from .tables import Key, MemoryListener, MemoryTransaction, StoredRow, Tables, with_error


class MemoryQueue:
    """The queue part of :class:`~trio_delta._store.memory.MemoryStore`."""

    def __init__(self, tables: Tables) -> None:
        self._t = tables

    async def upsert(
        self,
        items: Sequence[PreparedObject],
        params: UpsertParams,
        tx: StoreTransaction | AppConnection | None = None,
    ) -> list[InformResult[Any]]:
        await trio.lowlevel.checkpoint()
        unique = dedupe(items)
        if not unique:
            return []
        now, process_existing, is_stale = params.now, params.process_existing, params.is_stale
        if now is None:
            raise ConfigError("the memory store keeps no time of its own: upserts need `now`")
        mtx: MemoryTransaction | None = None
        if tx is not None:
            if isinstance(tx, psycopg.Connection | psycopg.AsyncConnection):
                raise ConfigError(
                    "the memory store has no SQL: inform on a database connection "
                    "needs a client on Postgres"
                )
            if not isinstance(tx, MemoryTransaction) or tx.tables is not self._t:
                raise ConfigError("tx must come from this client's transaction()")
            if tx.closed:
                raise StoreError("inform failed: the transaction is already over")
            mtx = tx
        keys = [(item.kind, item.object_id) for item in unique]
        await self._t.wait_unlocked(keys, mtx, self._t.lock_timeout)
        if mtx is not None:
            if mtx.closed:
                raise StoreError("inform failed: the transaction is already over")
            # Like the upsert's row locks: held until the transaction ends.
            for key in keys:
                self._t.locks[key] = mtx
        # From here on nothing awaits: the upsert is atomic.
        to_write: list[PreparedObject] = []
        stale: set[Key] = set()
        for item, key in zip(unique, keys, strict=True):
            old = self._t.view(key, mtx)
            if (
                is_stale is not None
                and old is not None
                and old.row.hash != item.hash
                and is_stale(item, old.row.encoded_object)
            ):
                stale.add(key)
                continue
            to_write.append(item)
        written: dict[Key, tuple[StoredRow, bool]] = {}
        for item in to_write:
            new_id = self._t.next_id()  # consumed even when nothing is written, as in Postgres
            key = (item.kind, item.object_id)
            old = self._t.view(key, mtx)
            if old is None:
                row = self._new_row(new_id, item, now)
            elif old.row.hash != item.hash or (
                process_existing and old.row.state is not ResourceState.PENDING
            ):
                row = self._changed_row(old, item, now)
            else:
                continue
            if (
                params.claim_by is not None
                and row.row.state is ResourceState.SCHEDULED
                and row.row.scheduled_at <= now
            ):
                row = _claimed(row, now, params.claim_by)
            if mtx is not None:
                mtx.staged[key] = row
            else:
                self._t.install(row)
            written[key] = (row, old is None)
        namespaces = {
            row.row.namespace
            for row, _ in written.values()
            if row.row.state is ResourceState.SCHEDULED
        }
        if mtx is not None:
            mtx.namespaces |= namespaces
        else:
            self._t.notify(namespaces)
        results: list[InformResult[Any]] = []
        for key in keys:
            if key in written:
                row, inserted = written[key]
                results.append(InformResult(row.snapshot(), not inserted, changed=True))
            else:
                row = self._t.view(key, mtx)
                assert row is not None
                results.append(
                    InformResult(row.snapshot(), True, changed=False, stale=key in stale)
                )
        return results

    @staticmethod
    def _new_row(row_id: int, item: PreparedObject, now: datetime) -> StoredRow:
        row: ResourceRow[Any] = ResourceRow(
            id=row_id,
            kind=item.kind,
            object_id=item.object_id,
            namespace=item.namespace,
            state=ResourceState.SCHEDULED,
            attempt=0,
            max_attempts=item.max_attempts,
            encoded_object=item.encoded,
            hash=item.hash,
            metadata={},
            tags=item.tags,
            errors=(),
            created_at=now,
            updated_at=now,
            scheduled_at=now if item.run_at is None else item.run_at,
            attempted_at=None,
            attempted_by=None,
            synced_at=None,
            priority=item.priority,
        )
        return StoredRow(row, item.metadata)

    @staticmethod
    def _changed_row(old: StoredRow, item: PreparedObject, now: datetime) -> StoredRow:
        pending = old.row.state is ResourceState.PENDING
        row = replace(
            old.row,
            namespace=item.namespace,
            max_attempts=item.max_attempts,
            encoded_object=item.encoded,
            hash=item.hash,
            tags=item.tags,
            updated_at=now,
            state=old.row.state if pending else ResourceState.SCHEDULED,
            attempt=old.row.attempt if pending else 0,
            errors=old.row.errors if pending else (),
            scheduled_at=(
                old.row.scheduled_at if pending else now if item.run_at is None else item.run_at
            ),
            # Without a priority of its own, an object keeps the stored one.
            priority=item.priority if item.priority_set else old.row.priority,
        )
        return StoredRow(row, item.metadata)

    def _claimable(
        self, row: StoredRow, namespace: str, kinds: tuple[str, ...], now: datetime
    ) -> bool:
        rec = row.row
        return (
            rec.namespace == namespace
            and rec.kind in kinds
            and rec.state in CLAIMABLE_STATES
            and rec.scheduled_at <= now
            and row.key not in self._t.locks  # FOR UPDATE SKIP LOCKED
        )

    async def claim(
        self, requests: Sequence[ClaimRequest], *, now: datetime, client_id: str
    ) -> list[Resource[Any]]:
        await trio.lowlevel.checkpoint()
        out: list[Resource[Any]] = []
        budget = ClaimBudget()
        for req in requests:
            if req.limit <= 0 or not req.kinds:
                continue
            for kinds, limit in budget.steps(req):
                bound = req.cluster.get(kinds[0]) if len(kinds) == 1 else None
                tokens = 0.0
                if bound is not None and bound.cap is not None:
                    running = sum(  # the kind's pending rows, every client's
                        1
                        for r in self._t.rows.values()
                        if r.row.kind == kinds[0] and r.row.state is ResourceState.PENDING
                    )
                    limit = max(0, min(limit, bound.cap - running))
                if bound is not None and bound.per_second is not None:
                    tokens = self._t.read_bucket(kinds[0], bound.per_second, bound.burst, now)
                    limit = rate_limited(tokens, limit)
                due = [
                    r
                    for r in self._t.rows.values()
                    if self._claimable(r, req.namespace, kinds, now)
                ]
                rows = sorted(due, key=lambda r: claim_order(r.row))[:limit]
                for row in rows:
                    claimed = _claimed(row, now, client_id)
                    self._t.install(claimed)
                    out.append(claimed.snapshot())
                budget.took(kinds, len(rows))
                if bound is not None and bound.per_second is not None:
                    self._t.write_bucket(kinds[0], tokens - len(rows), now)
        out.sort(key=claim_order)
        return out

    async def complete(
        self, outcomes: Sequence[Outcome], *, now: datetime, client_id: str
    ) -> Completed:
        await trio.lowlevel.checkpoint()
        if not outcomes:
            return Completed([], [])
        assert all(o.kind not in DUE_LATER or o.retry_at is not None for o in outcomes)
        done = Completed([], [])
        namespaces: set[str] = set()
        for outcome in outcomes:
            row = self._t.rows.get(outcome.id)
            if row is not None and row.key in self._t.locks:
                # FOR UPDATE SKIP LOCKED: reported, never waited for.
                if outcome.id not in done.locked:
                    done.locked.append(outcome.id)
                continue
            if (
                row is None
                or row.row.state is not ResourceState.PENDING
                or row.row.attempt != outcome.attempt
                or row.row.attempted_by != client_id
            ):
                continue
            row = row.update(**self._outcome_changes(row.row, outcome, now))
            self._t.install(row)
            rec = row.row
            done.applied.append(
                AppliedOutcome(rec.id, rec.state, rec.attempt, rec.scheduled_at, rec.synced_at)
            )
            # A failed row is claimable at its retry_at. Postgres leaves that to
            # its clients' poll; here it is announced, so that a client sharing
            # this store learns of it (see Store.notifications_reliable).
            if rec.state is ResourceState.SCHEDULED or rec.state is ResourceState.FAILED:
                namespaces.add(rec.namespace)
        self._t.notify(namespaces)
        return done

    @staticmethod
    def _outcome_changes(rec: ResourceRow[Any], outcome: Outcome, now: datetime) -> dict[str, Any]:
        """The ``complete`` query's ``set`` clause, case for case."""
        kind = outcome.kind
        handback = kind is OutcomeKind.HANDBACK
        changed = rec.hash != outcome.hash
        requeue, snooze = kind is OutcomeKind.REQUEUE, kind is OutcomeKind.SNOOZE
        if handback or changed:
            state, scheduled_at = ResourceState.SCHEDULED, now
        elif requeue or snooze or kind is OutcomeKind.FAILED:
            assert outcome.retry_at is not None
            state = ResourceState.FAILED if kind is OutcomeKind.FAILED else ResourceState.SCHEDULED
            scheduled_at = outcome.retry_at
        else:
            state = ResourceState(kind.value)
            scheduled_at = rec.scheduled_at
        if handback or (snooze and not changed):
            attempt = rec.attempt - 1
        elif changed or requeue:
            attempt = 0
        else:
            attempt = rec.attempt
        synced = (kind is OutcomeKind.SYNCED or requeue) and not changed
        errors = rec.errors
        if not handback and changed:
            errors = ()  # a new version starts without the old one's errors
        elif not handback and outcome.error is not None:
            errors = with_error(errors, outcome.error)
        return {
            "state": state,
            "attempt": attempt,
            "scheduled_at": scheduled_at,
            "synced_at": now if synced else rec.synced_at,
            "errors": errors,
            "updated_at": now,
            "snoozes": rec.snoozes + (1 if snooze and not changed else 0),
        }

    async def not_pending(self, ids: Sequence[int]) -> list[int]:
        await trio.lowlevel.checkpoint()
        return [
            i
            for i in ids
            if (row := self._t.rows.get(i)) is None or row.row.state is not ResourceState.PENDING
        ]

    async def upsert_chunks(
        self,
        next_chunk: Callable[[], Awaitable[list[PreparedObject] | None]],
        params: UpsertParams,
        tx: StoreTransaction,
    ) -> list[InformResult[Any]]:
        return await upsert_one_by_one(self.upsert, next_chunk, params, tx)

    async def upsert_quiet(self, items: Sequence[PreparedObject], params: UpsertParams) -> None:
        await self.upsert(items, params)

    async def next_scheduled_at(
        self, namespaces: Sequence[str], kinds: Sequence[str]
    ) -> datetime | None:
        await trio.lowlevel.checkpoint()
        times = [
            r.row.scheduled_at
            for r in self._t.rows.values()
            if r.row.namespace in namespaces
            and r.row.kind in kinds
            and r.row.state in CLAIMABLE_STATES
        ]
        return min(times, default=None)

    @asynccontextmanager
    async def transaction(
        self, *, informs_only: bool = False
    ) -> AsyncGenerator[MemoryTransaction, None]:
        await trio.lowlevel.checkpoint()
        tx = MemoryTransaction(self._t)
        committed = False
        try:
            yield tx
            await trio.lowlevel.checkpoint()
            self._t.end(tx, commit=True)
            committed = True
        finally:
            if not committed:
                self._t.end(tx, commit=False)

    def listen(self) -> AbstractAsyncContextManager[MemoryListener]:
        return self._t.listen()


def _claimed(row: StoredRow, now: datetime, client_id: str) -> StoredRow:
    """``row`` claimed by ``client_id`` at ``now``: by a claim, or by the
    upsert that writes it (``UpsertParams.claim_by``)."""
    return row.update(
        state=ResourceState.PENDING,
        attempt=row.row.attempt + 1,
        attempted_at=now,
        attempted_by=client_id,
        updated_at=now,
    )
