"""The store port: what the engine, the client and the command line ask of storage.

Split by who asks, each part a protocol of its own:

* :class:`QueueStore`: the resource queue (upsert, claim, complete), used by
  informs, the fetcher, the workers' outcome writer;
* :class:`ControlStore`: the control plane (informer schedule, leader
  election, maintenance), used by the engine's background services;
* :class:`InsightStore`: reading and changing resources from outside the
  control loop (the client's look-ups, the command line's administration).

A :class:`Store` holds one of each as ``queue``, ``control`` and
``insights``. Two adapters implement it with identical semantics:
:mod:`.postgres` (psycopg, through the one bridge module) and :mod:`.memory`
(in-process, for deterministic tests); the conformance suite runs the same
tests against both. Time never comes from a store: every method that
decides anything by time takes ``now`` from the engine's clock.

State rules every adapter follows:

* upsert, new row: ``scheduled`` at ``now``, attempt 0.
* upsert, existing row, same hash: unchanged, unless ``process_existing`` and
  the row is not ``pending``: then it is rescheduled like a changed row.
* upsert, existing row, stale per ``is_stale`` (the stored object is newer):
  ignored entirely, ``process_existing`` or not: an older version cannot
  reschedule anything.
* upsert, existing row, changed: object, hash, namespace, metadata, tags and
  max_attempts replaced; when not ``pending`` it becomes ``scheduled`` at
  ``now`` with attempt 0 and no errors. A ``pending`` row keeps its state; its
  outcome then sees the hash differ and reschedules it.
* claim: claimable rows (scheduled, failed, expired) with ``scheduled_at <=
  now``, oldest ``scheduled_at`` then id first, skipping rows another claimer
  holds; each becomes ``pending``, ``attempt + 1``, ``attempted_at = now``,
  ``attempted_by = client_id``.
* complete: applies only where the row is still ``pending`` with the claimed
  attempt and ``attempted_by``; if the hash changed meanwhile the row is
  rescheduled at ``now`` (attempt 0) instead, except for handbacks, which
  always restore ``scheduled`` at ``now`` with the attempt before the claim.
  A row another transaction holds is skipped, never waited for, and its id
  reported as ``locked`` (the rest of the batch is applied).
* upsert of a row another transaction holds waits at most the store's lock
  timeout, then raises :class:`~trio_delta.LockTimeoutError` naming the row,
  writing nothing.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from datetime import datetime
from typing import Any, Protocol

import psycopg

from .._objects import PreparedObject
from .._types import InformResult, Resource, ResourceRow, ResourceState
from .params import (
    Activity,
    Change,
    ClaimRequest,
    Completed,
    ControllerState,
    InformClaim,
    InformLease,
    InformRunEnd,
    LeaderState,
    Outcome,
    Pause,
    RescueParams,
    ResourceFilter,
    StateCount,
    UpsertParams,
)


class StoreTransaction(Protocol):
    """A transaction of the user's, which informs may join."""

    async def execute(
        self, query: str, params: Sequence[Any] | Mapping[str, Any] | None = None
    ) -> list[tuple[Any, ...]]:
        """Run the user's SQL; returns the rows, if the statement has any."""
        ...


#: An application's own connection an inform may join: a synchronous psycopg
#: connection, or an async one that runs on Trio (``trio_delta.connect``).
AppConnection = psycopg.Connection[Any] | psycopg.AsyncConnection[Any]


class Listener(Protocol):
    async def wait(self) -> str:
        """The next notification's payload; raises :class:`StoreError` when
        the connection is lost."""
        ...


class QueueStore(Protocol):
    """The resource queue."""

    async def upsert(
        self,
        items: Sequence[PreparedObject],
        params: UpsertParams,
        tx: StoreTransaction | AppConnection | None = None,
    ) -> list[InformResult[Any]]:
        """Insert or update ``items`` in one transaction (``tx`` if given:
        one of this store's transactions, or an application's connection,
        in its transaction or else in one of its own).

        Later items win over earlier ones with the same kind and id. Returns a
        result per distinct item, in input order. Wakes listeners of the
        namespaces that gained claimable rows, on commit.
        """
        ...

    async def upsert_chunks(
        self,
        next_chunk: Callable[[], Awaitable[list[PreparedObject] | None]],
        params: UpsertParams,
        tx: StoreTransaction,
    ) -> list[InformResult[Any]]:
        """:meth:`upsert` of each chunk ``next_chunk()`` gives, until None,
        in ``tx`` (opened with ``informs_only``); no object is in two
        chunks. Results for every chunk's distinct items, in order. The
        next chunk may be asked for before the last one's rows are read:
        Postgres writes one chunk while the client prepares the next."""
        ...

    async def upsert_quiet(self, items: Sequence[PreparedObject], params: UpsertParams) -> None:
        """:meth:`upsert` for informer batches: the same writes, no rows read back."""
        ...

    async def claim(
        self, requests: Sequence[ClaimRequest], *, now: datetime, client_id: str
    ) -> list[Resource[Any]]:
        """Claim rows per the requests; oldest ``scheduled_at`` first."""
        ...

    async def complete(
        self, outcomes: Sequence[Outcome], *, now: datetime, client_id: str
    ) -> Completed:
        """Apply outcomes in one statement: those that applied, and the ids
        of those whose rows another transaction held (not waited for)."""
        ...

    async def not_pending(self, ids: Sequence[int]) -> list[int]:
        """Of the rows ``ids`` (claimed by the caller), those no longer
        pending: deleted, cancelled or rescued meanwhile."""
        ...

    async def next_scheduled_at(
        self, namespaces: Sequence[str], kinds: Sequence[str]
    ) -> datetime | None:
        """Earliest ``scheduled_at`` of a claimable row, or None."""
        ...

    def transaction(
        self, *, informs_only: bool = False
    ) -> AbstractAsyncContextManager[StoreTransaction]:
        """A transaction: commits on normal exit, rolls back on an exception.

        ``informs_only``: only :meth:`upsert` runs in it (a bulk inform of
        the client's own), never a user's SQL, so it keeps the store's own
        session settings for its whole length."""
        ...

    def listen(self) -> AbstractAsyncContextManager[Listener]:
        """Subscribe to wake-ups; raises :class:`StoreError` when it cannot.

        Payloads: a namespace (rows became claimable there), ``inform:KIND``
        (an informer run was requested), ``leader:NAME`` (a leader resigned).
        """
        ...


class ControlStore(Protocol):
    """The informer schedule, leader election and maintenance."""

    async def ensure_controllers(
        self, schedule: Mapping[str, datetime | None], *, now: datetime
    ) -> None:
        """Create missing controller rows with ``next_inform_at`` from
        ``schedule``; a row without a schedule (and no lease) gets one. Existing
        schedules are kept, so they survive restarts."""
        ...

    async def claim_inform(self, lease: InformLease) -> InformClaim | None:
        """Take the kind's informer lease when a run is due (``next_inform_at
        <= now`` or requested) and no unexpired lease is held."""
        ...

    async def finish_inform(self, end: InformRunEnd) -> None:
        """Record how a run ended (see :class:`InformRunEnd`); only the
        lease holder's end counts."""
        ...

    async def request_inform(
        self,
        kind: str,
        *,
        now: datetime,
        process_existing: bool,
        options: Mapping[str, Any] | None,
    ) -> None:
        """Ask for a run of ``kind``'s informer as soon as possible."""
        ...

    async def get_controller(self, kind: str) -> ControllerState | None: ...

    async def list_controllers(self) -> list[ControllerState]: ...

    async def elect(
        self, name: str, *, client_id: str, now: datetime, expires_at: datetime
    ) -> bool:
        """Become or stay leader when nobody else holds an unexpired lease."""
        ...

    async def resign(self, name: str, *, client_id: str) -> None:
        """Give up leadership (if held) and wake the followers."""
        ...

    async def get_leader(self, name: str) -> LeaderState | None: ...

    async def pause(self, pause: Pause) -> bool:
        """Record ``pause`` (with when and by whom) and tell every client;
        False when it was paused already."""
        ...

    async def resume(self, kind: str | None, namespace: str | None) -> bool:
        """Remove the pause of exactly ``kind`` and ``namespace``; False
        when there was none."""
        ...

    async def list_pauses(self) -> list[Pause]:
        """Every pause, by kind then namespace."""
        ...

    async def rescue(self, params: RescueParams) -> int:
        """Fail (or degrade, when out of attempts) pending rows attempted
        before ``stuck_before``, recording ``error``; claimable at ``now``."""
        ...

    async def expire(
        self, namespace: str, *, now: datetime, synced_before: datetime, limit: int
    ) -> int:
        """Expire synced rows of ``namespace`` synced before ``synced_before``
        (attempts and errors start afresh, as for :attr:`Change.INVALIDATE`)."""
        ...

    async def clean(
        self, namespace: str, state: ResourceState, *, updated_before: datetime, limit: int
    ) -> int:
        """Delete up to ``limit`` rows in ``state`` last updated before the cut-off."""
        ...


class InsightStore(Protocol):
    """Reading resources, and changing them by hand."""

    async def get_resource(self, kind: str, object_id: str) -> ResourceRow[Any] | None: ...

    async def list_resources(self, flt: ResourceFilter) -> list[ResourceRow[Any]]:
        """Matching rows ordered by id; all of them when ``limit`` is None."""
        ...

    async def count_states(self, flt: ResourceFilter, now: datetime) -> list[StateCount]:
        """Resources per kind, namespace and state (``limit`` and
        ``after_id`` ignored), ordered by those three; ``waiting`` counts
        the rows due after ``now``."""
        ...

    async def activity(self, since: datetime, namespaces: Sequence[str]) -> Activity:
        """Resources of ``namespaces`` synced since ``since``, per minute of
        their latest sync (those synced now), and the clients holding
        pending resources."""
        ...

    async def known_kinds(self) -> list[str]:
        """Every kind with a controller row or a resource, sorted."""
        ...

    async def change(
        self, change: Change, flt: ResourceFilter, *, now: datetime
    ) -> list[ResourceRow[Any]]:
        """Apply ``change`` to the matching rows in the states it acts on
        (lowest ids first, at most ``limit``); returns them as they are now
        (as they were, for a hard delete). Wakes the namespaces that gained
        claimable rows."""
        ...


class Store(Protocol):
    """A database of one schema, as the three parts above."""

    @property
    def schema(self) -> str: ...

    @property
    def notifications_reliable(self) -> bool:
        """True when every listener hears of every row that becomes
        claimable, now or at a later ``scheduled_at`` (a failed attempt's
        retry), and no notification is ever lost: then a fetcher needs no
        poll. False for Postgres (a NOTIFY is lost while the LISTEN
        connection is down, and retries coming due are not announced)."""
        ...

    @property
    def queue(self) -> QueueStore: ...

    @property
    def control(self) -> ControlStore: ...

    @property
    def insights(self) -> InsightStore: ...

    async def database_now(self) -> datetime:
        """The database's current time, to anchor the engine's clock."""
        ...

    async def ping(self) -> None:
        """One round trip to the database on a pooled connection (for a
        health check); raises :class:`StoreError` when it cannot."""
        ...

    def pool_usage(self) -> tuple[int, int]:
        """Connections of the pool in use, and the most it opens ((0, 0)
        for a store without one)."""
        ...

    async def schema_version(self) -> int | None:
        """The applied migration version; None when the schema has no tables."""
        ...

    async def aclose(self) -> None: ...
