"""The in-memory adapter of the store port, for deterministic tests.

It follows :class:`.postgres.PostgresStore` (the reference semantics) rule
for rule, including the details a test can see: ids come from one counter
that, like a Postgres identity column, is consumed by every row an upsert
proposes (an unchanged row too) and never rolled back; a user transaction
locks every key it upserts until it ends, so claims skip those rows and other
writers to them wait; notifications of a transaction go out on commit.

Everything is pure Trio. Every async method passes a checkpoint first, so
code on the memory store meets the same scheduling points as on Postgres.
Time never comes from here: methods take ``now``; :meth:`database_now`
returns the anchor given to the constructor, advanced by Trio's clock.
The control plane (informer schedule, leader, maintenance) is mixed in
from :mod:`.memory_control`. Records handed out are
snapshots: later changes to the store never show through them.
"""

from __future__ import annotations

import math
from collections.abc import AsyncGenerator, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import trio

from .._errors import ConfigError, StoreError
from .._objects import PreparedObject
from .._types import CLAIMABLE_STATES, ResourceState
from .base import (
    AppliedOutcome,
    ClaimBudget,
    ClaimRequest,
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
from .memory_control import ControllerRow, MemoryControlPlane, with_error

#: The default answer of :meth:`MemoryStore.database_now`.
DEFAULT_ANCHOR = datetime(2030, 1, 1, tzinfo=UTC)

Key = tuple[str, str]


@dataclass(frozen=True, slots=True)
class StoredRow:
    """A stored row: the record, with its metadata kept as JSON so that every
    snapshot gets a fresh (unshared) mapping."""

    record: ResourceRecord
    metadata: bytes

    @property
    def key(self) -> Key:
        return (self.record.kind, self.record.object_id)

    def snapshot(self) -> ResourceRecord:
        return replace(self.record, metadata=msgspec.json.decode(self.metadata))

    def update(self, **changes: Any) -> StoredRow:
        return StoredRow(replace(self.record, **changes), self.metadata)


class MemoryTransaction:
    """A transaction on the memory store: upserts made with it are staged
    and become visible on commit; it cannot run SQL."""

    def __init__(self, store: MemoryStore) -> None:
        self.store = store
        self.staged: dict[Key, StoredRow] = {}
        self.namespaces: set[str] = set()
        self.closed = False

    async def execute(
        self, query: str, params: Sequence[Any] | Mapping[str, Any] | None = None
    ) -> list[tuple[Any, ...]]:
        await trio.lowlevel.checkpoint()
        raise ConfigError(
            "the memory store cannot run SQL: tx.execute() needs a Postgres store "
            "(test SQL against a real database, or keep it out of the memory-store test)"
        )


class MemoryListener:
    def __init__(self, receive: trio.MemoryReceiveChannel[str]) -> None:
        self._receive = receive

    async def wait(self) -> str:
        return await self._receive.receive()


class MemoryStore(MemoryControlPlane):
    """The store in process memory; see the module docstring."""

    def __init__(self, *, anchor: datetime = DEFAULT_ANCHOR) -> None:
        self.schema = "memory"
        self._anchor = anchor
        self._started_at: float | None = None
        self._rows: dict[int, StoredRow] = {}
        self._ids: dict[Key, int] = {}
        self._last_id = 0
        self._locks: dict[Key, MemoryTransaction] = {}
        self._released = trio.Event()
        self._listeners: set[trio.MemorySendChannel[str]] = set()
        self._controllers: dict[str, ControllerRow] = {}
        self._leaders: dict[str, LeaderState] = {}

    def __repr__(self) -> str:
        return f"<MemoryStore {len(self._rows)} rows>"

    # -- plumbing ---------------------------------------------------------------

    def _next_id(self) -> int:
        self._last_id += 1
        return self._last_id

    def _view(self, key: Key, tx: MemoryTransaction | None) -> StoredRow | None:
        if tx is not None and key in tx.staged:
            return tx.staged[key]
        row_id = self._ids.get(key)
        return None if row_id is None else self._rows[row_id]

    def _install(self, row: StoredRow) -> None:
        self._rows[row.record.id] = row
        self._ids[row.key] = row.record.id

    def _blocked(self, keys: Iterable[Key], tx: MemoryTransaction | None) -> bool:
        return any(self._locks.get(key, tx) is not tx for key in keys)

    async def _wait_unlocked(self, keys: Sequence[Key], tx: MemoryTransaction | None) -> None:
        """Wait while another transaction holds any of ``keys`` (Postgres would
        block on the row lock until that transaction ends)."""
        while self._blocked(keys, tx):
            await self._released.wait()

    def _notify(self, namespaces: Iterable[str]) -> None:
        for namespace in sorted(set(namespaces)):
            for send in self._listeners:
                send.send_nowait(namespace)

    def _end(self, tx: MemoryTransaction, *, commit: bool) -> None:
        tx.closed = True
        if commit:
            for row in tx.staged.values():
                self._install(row)
            self._notify(tx.namespaces)
        for key in [key for key, owner in self._locks.items() if owner is tx]:
            del self._locks[key]
        tx.staged.clear()
        self._released.set()
        self._released = trio.Event()

    # -- the Store protocol -------------------------------------------------------

    async def database_now(self) -> datetime:
        """The anchor at the first call, then the anchor plus the Trio time
        elapsed since: clients started later on a shared store agree on the
        time, as they would on one database."""
        await trio.lowlevel.checkpoint()
        now = trio.current_time()
        if self._started_at is None:
            self._started_at = now
        return self._anchor + timedelta(seconds=now - self._started_at)

    async def check_schema(self) -> None:
        await trio.lowlevel.checkpoint()

    async def aclose(self) -> None:
        await trio.lowlevel.checkpoint()

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
        await trio.lowlevel.checkpoint()
        unique = dedupe(items)
        if not unique:
            return []
        mtx: MemoryTransaction | None = None
        if tx is not None:
            if not isinstance(tx, MemoryTransaction) or tx.store is not self:
                raise TypeError("tx must come from this client's transaction()")
            if tx.closed:
                raise StoreError("inform failed: the transaction is already over")
            mtx = tx
        keys = [(item.kind, item.object_id) for item in unique]
        await self._wait_unlocked(keys, mtx)
        if mtx is not None:
            if mtx.closed:
                raise StoreError("inform failed: the transaction is already over")
            # Like the upsert's row locks: held until the transaction ends.
            for key in keys:
                self._locks[key] = mtx
        # From here on nothing awaits: the upsert is atomic.
        to_write: list[PreparedObject] = []
        for item, key in zip(unique, keys, strict=True):
            old = self._view(key, mtx)
            if (
                is_stale is not None
                and old is not None
                and old.record.hash != item.hash
                and is_stale(item, old.record.encoded_object)
            ):
                continue
            to_write.append(item)
        written: dict[Key, tuple[StoredRow, bool]] = {}
        for item in to_write:
            new_id = self._next_id()  # consumed even when nothing is written, as in Postgres
            key = (item.kind, item.object_id)
            old = self._view(key, mtx)
            if old is None:
                row = self._new_row(new_id, item, now)
            elif old.record.hash != item.hash or (
                process_existing and old.record.state is not ResourceState.PENDING
            ):
                row = self._changed_row(old, item, now)
            else:
                continue
            if mtx is not None:
                mtx.staged[key] = row
            else:
                self._install(row)
            written[key] = (row, old is None)
        namespaces = {
            row.record.namespace
            for row, _ in written.values()
            if row.record.state is ResourceState.SCHEDULED
        }
        if mtx is not None:
            mtx.namespaces |= namespaces
        else:
            self._notify(namespaces)
        if not want_records:
            return []
        results: list[UpsertResult] = []
        for key in keys:
            if key in written:
                row, inserted = written[key]
                results.append(UpsertResult(row.snapshot(), not inserted, changed=True))
            else:
                row = self._view(key, mtx)
                assert row is not None
                results.append(UpsertResult(row.snapshot(), already_exists=True, changed=False))
        return results

    @staticmethod
    def _new_row(row_id: int, item: PreparedObject, now: datetime) -> StoredRow:
        record = ResourceRecord(
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
            scheduled_at=now,
            attempted_at=None,
            attempted_by=None,
            synced_at=None,
        )
        return StoredRow(record, item.metadata)

    @staticmethod
    def _changed_row(old: StoredRow, item: PreparedObject, now: datetime) -> StoredRow:
        pending = old.record.state is ResourceState.PENDING
        record = replace(
            old.record,
            namespace=item.namespace,
            max_attempts=item.max_attempts,
            encoded_object=item.encoded,
            hash=item.hash,
            tags=item.tags,
            updated_at=now,
            state=old.record.state if pending else ResourceState.SCHEDULED,
            attempt=old.record.attempt if pending else 0,
            errors=old.record.errors if pending else (),
            scheduled_at=old.record.scheduled_at if pending else now,
        )
        return StoredRow(record, item.metadata)

    def _claimable(
        self, row: StoredRow, namespace: str, kinds: tuple[str, ...], now: datetime
    ) -> bool:
        rec = row.record
        return (
            rec.namespace == namespace
            and rec.kind in kinds
            and rec.state in CLAIMABLE_STATES
            and rec.scheduled_at <= now
            and row.key not in self._locks  # FOR UPDATE SKIP LOCKED
        )

    async def claim(
        self, requests: Sequence[ClaimRequest], *, now: datetime, client_id: str
    ) -> list[ResourceRecord]:
        await trio.lowlevel.checkpoint()
        out: list[ResourceRecord] = []
        budget = ClaimBudget()
        for req in requests:
            if req.limit <= 0 or not req.kinds:
                continue
            for kinds, limit in budget.steps(req):
                due = [r for r in self._rows.values()
                       if self._claimable(r, req.namespace, kinds, now)]
                rows = sorted(due, key=lambda r: (r.record.scheduled_at, r.record.id))[:limit]
                for row in rows:
                    claimed = row.update(
                        state=ResourceState.PENDING,
                        attempt=row.record.attempt + 1,
                        attempted_at=now,
                        attempted_by=client_id,
                        updated_at=now,
                    )
                    self._install(claimed)
                    out.append(claimed.snapshot())
                budget.took(kinds, len(rows))
        out.sort(key=lambda r: (r.scheduled_at, r.id))
        return out

    async def complete(
        self, outcomes: Sequence[Outcome], *, now: datetime, client_id: str
    ) -> list[AppliedOutcome]:
        await trio.lowlevel.checkpoint()
        if not outcomes:
            return []
        assert all(o.kind is not OutcomeKind.FAILED or o.retry_at is not None for o in outcomes)
        keys = [self._rows[o.id].key for o in outcomes if o.id in self._rows]
        await self._wait_unlocked(keys, None)
        applied: list[AppliedOutcome] = []
        namespaces: set[str] = set()
        for outcome in outcomes:
            row = self._rows.get(outcome.id)
            if (
                row is None
                or row.record.state is not ResourceState.PENDING
                or row.record.attempt != outcome.attempt
                or row.record.attempted_by != client_id
            ):
                continue
            row = row.update(**self._outcome_changes(row.record, outcome, now))
            self._install(row)
            rec = row.record
            applied.append(AppliedOutcome(rec.id, rec.state, rec.attempt, rec.scheduled_at,
                                          rec.synced_at))
            if rec.state is ResourceState.SCHEDULED:
                namespaces.add(rec.namespace)
        self._notify(namespaces)
        return applied

    @staticmethod
    def _outcome_changes(rec: ResourceRecord, outcome: Outcome, now: datetime) -> dict[str, Any]:
        """The ``complete`` query's ``set`` clause, case for case."""
        handback = outcome.kind is OutcomeKind.HANDBACK
        changed = rec.hash != outcome.hash
        if handback or changed:
            state, scheduled_at = ResourceState.SCHEDULED, now
        else:
            state = ResourceState(outcome.kind.value)
            scheduled_at = rec.scheduled_at
            if outcome.kind is OutcomeKind.FAILED:
                assert outcome.retry_at is not None
                scheduled_at = outcome.retry_at
        attempt = rec.attempt - 1 if handback else 0 if changed else rec.attempt
        synced = outcome.kind is OutcomeKind.SYNCED and not changed
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
        }

    async def next_scheduled_at(
        self, namespaces: Sequence[str], kinds: Sequence[str]
    ) -> datetime | None:
        await trio.lowlevel.checkpoint()
        times = [
            r.record.scheduled_at
            for r in self._rows.values()
            if r.record.namespace in namespaces
            and r.record.kind in kinds
            and r.record.state in CLAIMABLE_STATES
        ]
        return min(times, default=None)

    async def get_resource(self, kind: str, object_id: str) -> ResourceRecord | None:
        await trio.lowlevel.checkpoint()
        row = self._view((kind, object_id), None)
        return None if row is None else row.snapshot()

    async def list_resources(self, flt: ResourceFilter) -> list[ResourceRecord]:
        await trio.lowlevel.checkpoint()
        if flt.limit is not None and flt.limit < 0:
            raise StoreError("list_resources failed: LIMIT must not be negative")
        after = 0 if flt.after_id is None else flt.after_id
        out: list[ResourceRecord] = []
        for row_id in sorted(self._rows):
            if flt.limit is not None and len(out) >= flt.limit:
                break
            rec = self._rows[row_id].record
            if (
                row_id > after
                and (flt.kind is None or rec.kind == flt.kind)
                and (flt.namespace is None or rec.namespace == flt.namespace)
                and (flt.state is None or rec.state == flt.state)
            ):
                out.append(self._rows[row_id].snapshot())
        return out

    @asynccontextmanager
    async def transaction(self) -> AsyncGenerator[MemoryTransaction, None]:
        await trio.lowlevel.checkpoint()
        tx = MemoryTransaction(self)
        committed = False
        try:
            yield tx
            await trio.lowlevel.checkpoint()
            self._end(tx, commit=True)
            committed = True
        finally:
            if not committed:
                self._end(tx, commit=False)

    @asynccontextmanager
    async def listen(self) -> AsyncGenerator[MemoryListener, None]:
        await trio.lowlevel.checkpoint()
        send, receive = trio.open_memory_channel[str](math.inf)
        self._listeners.add(send)
        try:
            yield MemoryListener(receive)
        finally:
            self._listeners.discard(send)
            send.close()
            receive.close()


    async def invalidate(
        self, kind: str, object_id: str, *, now: datetime
    ) -> ResourceRecord | None:
        await trio.lowlevel.checkpoint()
        await self._wait_unlocked([(kind, object_id)], None)
        row = self._view((kind, object_id), None)
        if row is None or row.record.state is not ResourceState.SYNCED:
            return None
        row = row.update(state=ResourceState.EXPIRED, attempt=0, errors=(), scheduled_at=now,
                         updated_at=now)
        self._install(row)
        self._notify([row.record.namespace])
        return row.snapshot()




@asynccontextmanager
async def open_memory_store(
    *, anchor: datetime = DEFAULT_ANCHOR
) -> AsyncGenerator[MemoryStore, None]:
    """A fresh, empty memory store whose ``database_now()`` is ``anchor``."""
    store = MemoryStore(anchor=anchor)
    try:
        yield store
    finally:
        await store.aclose()
