"""The store port: every query the engine needs, batch-shaped.

The engine talks to storage only through :class:`Store`. Two adapters
implement it with identical semantics: :mod:`.postgres` (psycopg, through
the one bridge module) and :mod:`.memory` (in-process, for deterministic
tests). Time never comes from the store: every method that decides anything
by time takes ``now`` from the engine's clock.

State rules every adapter follows (the conformance suite checks them):

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
"""

from __future__ import annotations

import enum
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from .._objects import PreparedObject
from .._types import AttemptError, InformerState, ResourceState

#: Most errors kept per resource; older ones are dropped first.
MAX_ERRORS = 20


def dedupe(items: Sequence[PreparedObject]) -> list[PreparedObject]:
    """The last item per (kind, id), in the order of first appearance.

    One statement cannot update a row twice, and the later inform is the
    newer intent; both adapters upsert what this returns."""
    latest: dict[tuple[str, str], PreparedObject] = {}
    for item in items:
        latest[(item.kind, item.object_id)] = item
    return list(latest.values())


@dataclass(slots=True)
class ResourceRecord:
    """A resource row as stored; the object is still encoded.

    Read-only by convention (change one with :func:`dataclasses.replace`).
    Not frozen: a frozen dataclass sets each field through
    ``object.__setattr__``, which made building the rows of a claim cost
    ~2 us more per row. Fields in table order, so stores build it positionally.
    """

    id: int
    kind: str
    object_id: str
    namespace: str
    state: ResourceState
    attempt: int
    max_attempts: int
    encoded_object: bytes
    hash: bytes
    metadata: Mapping[str, Any]
    tags: tuple[str, ...]
    errors: tuple[AttemptError, ...]
    created_at: datetime
    updated_at: datetime
    scheduled_at: datetime
    attempted_at: datetime | None
    attempted_by: str | None
    synced_at: datetime | None


@dataclass(frozen=True, slots=True)
class UpsertResult:
    record: ResourceRecord
    already_exists: bool
    changed: bool


#: ``is_stale(incoming, stored_encoded) -> True`` when the stored object is
#: newer than the incoming one (per the object's ``compare``).
StaleCheck = Callable[[PreparedObject, bytes], bool]


@dataclass(frozen=True, slots=True)
class ClaimRequest:
    """Claim up to ``limit`` rows of ``kinds`` in ``namespace``.

    A kind mapped to a number may take at most that many of them; adapters
    claim the capped kinds first (each with what is left of ``limit``), then
    the uncapped kinds together.
    """

    namespace: str
    limit: int
    kinds: Mapping[str, int | None]

    def plan(self) -> list[tuple[tuple[str, ...], int | None]]:
        """Capped kinds one by one (with their cap), then the uncapped ones."""
        steps: list[tuple[tuple[str, ...], int | None]] = [
            ((kind, ), cap) for kind, cap in self.kinds.items() if cap is not None and cap > 0
        ]
        uncapped = tuple(kind for kind, cap in self.kinds.items() if cap is None)
        if uncapped:
            steps.append((uncapped, None))
        return steps


class ClaimBudget:
    """How much each step of one claim call may take.

    A kind's cap is per client, not per namespace: what one request of the
    call took of a capped kind is not there for the next request (a client
    serving two namespaces once ran a ``parallelism=1`` kind twice at once).
    Both adapters claim through this, so they agree::

        budget = ClaimBudget()
        for request in requests:
            for kinds, limit in budget.steps(request):
                rows = ...  # claim up to ``limit`` rows of ``kinds``
                budget.took(kinds, len(rows))
    """

    def __init__(self) -> None:
        self._taken: Counter[str] = Counter()
        self._remaining = 0

    def steps(self, request: ClaimRequest) -> Iterator[tuple[tuple[str, ...], int]]:
        self._remaining = request.limit
        for kinds, cap in request.plan():
            if cap is not None:
                cap -= self._taken[kinds[0]]  # a capped step is one kind
            limit = self._remaining if cap is None else min(cap, self._remaining)
            if limit > 0:
                yield kinds, limit

    def took(self, kinds: tuple[str, ...], count: int) -> None:
        self._remaining -= count
        if len(kinds) == 1:
            self._taken[kinds[0]] += count


class OutcomeKind(enum.Enum):
    SYNCED = "synced"
    FAILED = "failed"
    DEGRADED = "degraded"
    DELETED = "deleted"
    HANDBACK = "handback"


# Outcome and AppliedOutcome: made once per worked resource, so plain
# slotted dataclasses (a frozen one costs ~1 us more to build); read-only
# by convention.


@dataclass(slots=True)
class Outcome:
    """The result of working one claimed row.

    ``attempt`` and ``hash`` are the claimed row's; ``retry_at`` is set for
    ``FAILED``; ``error`` for ``FAILED`` and ``DEGRADED``.
    """

    id: int
    attempt: int
    hash: bytes
    kind: OutcomeKind
    error: AttemptError | None = None
    retry_at: datetime | None = None


@dataclass(slots=True)
class AppliedOutcome:
    """What an outcome did to its row."""

    id: int
    state: ResourceState
    attempt: int
    scheduled_at: datetime
    synced_at: datetime | None


@dataclass(frozen=True, slots=True)
class ResourceFilter:
    kind: str | None = None
    namespace: str | None = None
    state: ResourceState | None = None
    limit: int | None = None
    after_id: int | None = None


#: A kind's row in the controllers table (public as ``InformerState``).
ControllerState = InformerState


@dataclass(frozen=True, slots=True)
class InformClaim:
    """An informer run this client won the lease for."""

    cursor: datetime | None
    requested_at: datetime | None
    process_existing: bool
    options: Mapping[str, Any] | None


@dataclass(frozen=True, slots=True)
class LeaderState:
    leader_id: str
    elected_at: datetime
    expires_at: datetime


class StoreTransaction(Protocol):
    """A transaction of the user's, which informs may join."""

    async def execute(
        self, query: str, params: Sequence[Any] | Mapping[str, Any] | None = None
    ) -> list[tuple[Any, ...]]:
        """Run the user's SQL; returns the rows, if the statement has any."""
        ...


class Store(Protocol):
    """Everything the engine asks of storage."""

    schema: str

    async def database_now(self) -> datetime:
        """The database's current time, to anchor the engine's clock."""
        ...

    async def check_schema(self) -> None:
        """Raise :class:`NotMigratedError` unless the schema is current."""
        ...

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
        """Insert or update ``items`` in one transaction (``tx`` if given).

        Later items win over earlier ones with the same kind and id. Returns a
        result per distinct item, in input order, when ``want_records``; an
        empty list otherwise. Wakes listeners of the namespaces that gained
        claimable rows, on commit.
        """
        ...

    async def claim(
        self, requests: Sequence[ClaimRequest], *, now: datetime, client_id: str
    ) -> list[ResourceRecord]:
        """Claim rows per the requests; oldest ``scheduled_at`` first."""
        ...

    async def complete(
        self, outcomes: Sequence[Outcome], *, now: datetime, client_id: str
    ) -> list[AppliedOutcome]:
        """Apply outcomes atomically; returns those that applied."""
        ...

    async def next_scheduled_at(
        self, namespaces: Sequence[str], kinds: Sequence[str]
    ) -> datetime | None:
        """Earliest ``scheduled_at`` of a claimable row, or None."""
        ...

    async def get_resource(self, kind: str, object_id: str) -> ResourceRecord | None: ...

    async def list_resources(self, flt: ResourceFilter) -> list[ResourceRecord]:
        """Matching rows ordered by id; all of them when ``limit`` is None."""
        ...

    def transaction(self) -> AbstractAsyncContextManager[StoreTransaction]:
        """A transaction: commits on normal exit, rolls back on an exception."""
        ...

    def listen(self) -> AbstractAsyncContextManager[Listener]:
        """Subscribe to wake-ups; raises :class:`StoreError` when it cannot.

        Payloads: a namespace (rows became claimable there), ``inform:KIND``
        (an informer run was requested), ``leader:NAME`` (a leader resigned).
        """
        ...

    async def invalidate(
        self, kind: str, object_id: str, *, now: datetime
    ) -> ResourceRecord | None:
        """Turn a synced row into an expired one, claimable at ``now``, with
        attempts and errors starting afresh. None (and nothing changed) unless
        the row exists and is synced."""
        ...

    # -- informer schedule (the controllers table) -----------------------------

    async def ensure_controllers(
        self, schedule: Mapping[str, datetime | None], *, now: datetime
    ) -> None:
        """Create missing controller rows with ``next_inform_at`` from
        ``schedule``; a row without a schedule (and no lease) gets one. Existing
        schedules are kept, so they survive restarts."""
        ...

    async def claim_inform(
        self, kind: str, *, now: datetime, client_id: str, lease_until: datetime
    ) -> InformClaim | None:
        """Take the kind's informer lease when a run is due (``next_inform_at
        <= now`` or requested) and no unexpired lease is held."""
        ...

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
        """Release the lease; advance the cursor when ``cursor`` is given; set
        ``next_inform_at`` when ``reschedule``; clear the request this run
        served (a newer request stays)."""
        ...

    async def request_inform(
        self, kind: str, *, now: datetime, process_existing: bool,
        options: Mapping[str, Any] | None,
    ) -> None:
        """Ask for a run of ``kind``'s informer as soon as possible."""
        ...

    async def get_controller(self, kind: str) -> ControllerState | None: ...

    async def list_controllers(self) -> list[ControllerState]: ...

    # -- leader election -----------------------------------------------------

    async def elect(
        self, name: str, *, client_id: str, now: datetime, expires_at: datetime
    ) -> bool:
        """Become or stay leader when nobody else holds an unexpired lease."""
        ...

    async def resign(self, name: str, *, client_id: str) -> None:
        """Give up leadership (if held) and wake the followers."""
        ...

    async def get_leader(self, name: str) -> LeaderState | None: ...

    # -- maintenance ----------------------------------------------------------

    async def rescue(
        self, *, now: datetime, stuck_before: datetime, limit: int, error: str
    ) -> int:
        """Fail (or degrade, when out of attempts) pending rows attempted
        before ``stuck_before``, recording ``error``; claimable at ``now``."""
        ...

    async def expire(
        self, namespace: str, *, now: datetime, synced_before: datetime, limit: int
    ) -> int:
        """Expire synced rows of ``namespace`` synced before ``synced_before``
        (attempts and errors start afresh, as for :meth:`invalidate`)."""
        ...

    async def clean(
        self, namespace: str, state: ResourceState, *, updated_before: datetime, limit: int
    ) -> int:
        """Delete up to ``limit`` rows in ``state`` last updated before the cut-off."""
        ...


class Listener(Protocol):
    async def wait(self) -> str:
        """The next notification's payload (a namespace); raises
        :class:`StoreError` when the connection is lost."""
        ...
