"""The values the store port takes and returns.

Rows are :class:`~trio_delta.ResourceRow` (the one row type); everything else
a store method needs beyond a few arguments comes as one small params object,
so adapters and callers agree on one shape.
"""

from __future__ import annotations

import dataclasses
import enum
import math
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from .._config import check_name
from .._errors import ConfigError, LockTimeoutError
from .._objects import PreparedObject, check_kind
from .._types import AttemptError, InformerState, InformResult, ResourceRow, ResourceState

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


async def upsert_one_by_one(
    upsert: Callable[[list[PreparedObject], UpsertParams, Any], Awaitable[list[InformResult[Any]]]],
    next_chunk: Callable[[], Awaitable[list[PreparedObject] | None]],
    params: UpsertParams,
    tx: Any,
) -> list[InformResult[Any]]:
    """``upsert_chunks`` as a store's ``upsert`` of each chunk in turn."""
    results: list[InformResult[Any]] = []
    while (chunk := await next_chunk()) is not None:
        results += await upsert(chunk, params, tx)
    return results


def lock_timeout_error(
    what: str, held: Sequence[tuple[str, str]], seconds: float | None
) -> LockTimeoutError:
    """The error of ``what`` (an upsert) given up after waiting ``seconds`` for
    rows another transaction holds; ``held``: the (kind, id) of those rows,
    as far as they are known."""
    if held:
        kind, object_id = held[0]
        rows = f"{kind} {object_id!r}" + (f" (and {len(held) - 1} more)" if len(held) > 1 else "")
    else:
        kind = object_id = None
        rows = "one of its rows"
    return LockTimeoutError(
        f"{what} failed: {rows} stayed locked by another transaction for "
        + ("longer than the lock timeout" if seconds is None else f"{seconds:g}s")
        + " (Config.lock_timeout); nothing was written",
        kind=kind,
        object_id=object_id,
    )


# -- the queue ---------------------------------------------------------------------

#: ``is_stale(incoming, stored_encoded) -> True`` when the stored object is
#: newer than the incoming one (per the object's ``compare``).
StaleCheck = Callable[[PreparedObject, bytes], bool]


@dataclass(frozen=True, slots=True)
class UpsertParams:
    """How to write a batch of objects.

    ``process_existing`` reschedules unchanged rows too (not pending ones);
    ``is_stale`` skips objects older than the stored ones. ``now`` None
    (Postgres only) takes the database's statement time: for producers,
    which run no engine clock. ``claim_by``: a client id that claims, as
    they are written, the rows the write leaves scheduled and due (state
    ``pending``, attempt 1, as a claim would), for a client with a worker
    free for them.
    """

    now: datetime | None
    process_existing: bool = False
    is_stale: StaleCheck | None = None
    claim_by: str | None = None


@dataclass(frozen=True, slots=True)
class ClusterLimit:
    """What bounds a kind across every client: at most ``cap`` rows pending,
    at most ``per_second`` claimed a second with bursts of ``burst``."""

    cap: int | None = None
    per_second: float | None = None
    burst: int = 1


@dataclass(frozen=True, slots=True)
class ClaimRequest:
    """Claim up to ``limit`` rows of ``kinds`` in ``namespace``.

    A kind mapped to a number may take at most that many of them; adapters
    claim the capped kinds first (each with what is left of ``limit``), then
    the uncapped kinds together. A kind in ``cluster`` is bounded across
    every client too (see :class:`ClusterLimit`), in a claim step of its own.
    """

    namespace: str
    limit: int
    kinds: Mapping[str, int | None]
    cluster: Mapping[str, ClusterLimit] = field(default_factory=dict[str, ClusterLimit])

    def plan(self) -> list[tuple[tuple[str, ...], int | None]]:
        """Capped kinds one by one (with their cap), then the uncapped ones."""
        steps: list[tuple[tuple[str, ...], int | None]] = [
            ((kind,), cap)
            for kind, cap in self.kinds.items()
            if (cap is not None and cap > 0) or (cap is None and kind in self.cluster)
        ]
        bounded = self.cluster
        uncapped = tuple(k for k, cap in self.kinds.items() if cap is None and k not in bounded)
        if uncapped:
            steps.append((uncapped, None))
        return steps


def rate_limited(tokens: float, limit: int) -> int:
    """How many rows a claim may take with ``tokens`` in its kind's bucket."""
    return max(0, min(limit, math.floor(tokens + 1e-9)))


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


def claim_order(row: ResourceRow[Any]) -> tuple[int, datetime, int]:
    """The order claims take rows in: the highest priority, then the
    earliest due, then the oldest."""
    return (-row.priority, row.scheduled_at, row.id)


class OutcomeKind(enum.Enum):
    SYNCED = "synced"
    FAILED = "failed"
    DEGRADED = "degraded"
    DELETED = "deleted"
    HANDBACK = "handback"
    REQUEUE = "requeue"
    """Synced, and due again at ``retry_at``."""
    SNOOZE = "snooze"
    """Due again at ``retry_at``; the attempt is given back."""

    # Members are singletons compared by identity: hashed by identity too,
    # in C, where Enum's own hash is a Python call (a dict lookup per
    # worked resource names its outcome).
    __hash__ = object.__hash__


#: Outcomes that make their row due again at their ``retry_at``.
DUE_LATER = frozenset({OutcomeKind.FAILED, OutcomeKind.REQUEUE, OutcomeKind.SNOOZE})


# Outcome and AppliedOutcome: made once per worked resource, so plain
# slotted dataclasses (a frozen one costs ~1 us more to build); read-only
# by convention.


@dataclass(slots=True)
class Outcome:
    """The result of working one claimed row.

    ``attempt`` and ``hash`` are the claimed row's; ``retry_at`` is set for
    ``FAILED``, ``REQUEUE`` and ``SNOOZE``; ``error`` for ``FAILED`` and
    ``DEGRADED``.
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


@dataclass(slots=True)
class Completed:
    """What :meth:`~.port.QueueStore.complete` did with a batch of outcomes.

    ``locked`` holds the ids of outcomes left alone because another
    transaction held their row: they are neither applied nor refused, and
    may be completed again later.
    """

    applied: list[AppliedOutcome]
    locked: list[int]


# -- the control plane ------------------------------------------------------------

#: A kind's row in the controllers table (public as ``InformerState``).
ControllerState = InformerState


@dataclass(frozen=True, slots=True)
class InformLease:
    """Take ``kind``'s informer lease until ``lease_until``, if a run is due."""

    kind: str
    client_id: str
    now: datetime
    lease_until: datetime


@dataclass(frozen=True, slots=True)
class InformClaim:
    """An informer run this client won the lease for."""

    cursor: datetime | None
    requested_at: datetime | None
    process_existing: bool
    options: Mapping[str, Any] | None


@dataclass(frozen=True, slots=True)
class InformRunEnd:
    """How an informer run ended.

    The lease is released; ``cursor`` advances the kind's cursor when given;
    ``next_inform_at`` replaces the schedule when ``reschedule``; the request
    the run served (``requested_at``) is cleared, a newer one stays.
    """

    kind: str
    client_id: str
    now: datetime
    cursor: datetime | None
    reschedule: bool
    next_inform_at: datetime | None
    requested_at: datetime | None
    error: str | None


@dataclass(frozen=True, slots=True)
class LeaderState:
    leader_id: str
    elected_at: datetime
    expires_at: datetime


@dataclass(frozen=True, slots=True)
class RescueParams:
    """Fail (or degrade) up to ``limit`` rows pending since before
    ``stuck_before``, recording ``error``."""

    now: datetime
    stuck_before: datetime
    limit: int
    error: str


# -- insights ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ResourceFilter:
    """Which resources to read or change; None matches everything.

    ``states`` and ``object_ids`` match any of theirs, ``tags`` all of
    theirs; ``id_contains`` matches object ids that contain it (case
    sensitive). Rows come lowest id first, after ``after_id``, at most
    ``limit``.
    """

    kind: str | None = None
    namespace: str | None = None
    states: tuple[ResourceState, ...] | None = None
    tags: tuple[str, ...] | None = None
    object_ids: tuple[str, ...] | None = None
    after_id: int | None = None
    limit: int | None = None
    id_contains: str | None = None

    @property
    def is_everything(self) -> bool:
        selects = (self.kind, self.namespace, self.states, self.tags, self.object_ids)
        return selects == (None,) * 5 and not self.id_contains

    def narrowed(self, states: tuple[ResourceState, ...]) -> ResourceFilter:
        """This filter, for those of ``states`` it allows."""
        allowed = states if self.states is None else tuple(s for s in states if s in self.states)
        return dataclasses.replace(self, states=allowed)


class Change(enum.Enum):
    """What an operator may do to resources, and the states each acts on."""

    RETRY = "retry"
    """failed/degraded -> scheduled now, attempts and errors start again."""
    INVALIDATE = "invalidate"
    """synced -> expired, due now, attempts and errors start again."""
    DELETE = "delete"
    """any state -> deleted (removed by the cleaner after retention)."""
    HARD_DELETE = "hard_delete"
    """removed at once."""

    @property
    def states(self) -> tuple[ResourceState, ...]:
        return _CHANGE_STATES[self]

    @property
    def restarts_to(self) -> ResourceState | None:
        """The state a change that starts a new round of work leaves rows in."""
        return _RESTARTS_TO.get(self)


_KNOWN = tuple(s for s in ResourceState if s is not ResourceState.UNKNOWN)
_CHANGE_STATES: dict[Change, tuple[ResourceState, ...]] = {
    Change.RETRY: (ResourceState.FAILED, ResourceState.DEGRADED),
    Change.INVALIDATE: (ResourceState.SYNCED,),
    Change.DELETE: tuple(s for s in _KNOWN if s is not ResourceState.DELETED),
    Change.HARD_DELETE: _KNOWN,
}


_RESTARTS_TO = {Change.RETRY: ResourceState.SCHEDULED, Change.INVALIDATE: ResourceState.EXPIRED}


@dataclass(frozen=True, slots=True)
class StateCount:
    """How many resources of a kind and namespace are in a state."""

    kind: str
    namespace: str
    state: ResourceState
    count: int
    oldest_scheduled_at: datetime | None
    """The earliest ``scheduled_at`` among them (scheduled rows only)."""
    waiting: int = 0
    """Of these, scheduled rows not yet due (a run-at, requeue or snooze)."""
    snoozed: int = 0
    """Of the waiting, those that work has snoozed."""


@dataclass(frozen=True, slots=True)
class Activity:
    """Recent work, as the resources show it."""

    synced_per_minute: tuple[tuple[datetime, int], ...]
    """(minute, resources whose latest sync fell in it), oldest first."""
    working: tuple[tuple[str, int], ...]
    """(client id, resources it holds pending), by client id."""


# -- pauses ----------------------------------------------------------------------


def check_pause_target(kind: str | None, namespace: str | None) -> tuple[str | None, str | None]:
    """``(kind, namespace)`` of a pause or resume, checked: at least one."""
    if kind is None and namespace is None:
        raise ConfigError("pause or resume a kind, a namespace, or both; got neither")
    if kind is not None:
        check_kind(kind, error=ConfigError)
    if namespace is not None:
        check_name("namespace", namespace)
    return kind, namespace


@dataclass(frozen=True, slots=True)
class Pause:
    """Work no client claims: a kind (in every namespace when ``namespace``
    is None), a namespace (every kind in it when ``kind`` is None), or one
    kind in one namespace."""

    kind: str | None
    namespace: str | None
    paused_at: datetime | None = None
    paused_by: str | None = None

    def __str__(self) -> str:
        if self.kind is None:
            return f"namespace {self.namespace}"
        if self.namespace is None:
            return f"kind {self.kind}"
        return f"kind {self.kind} in namespace {self.namespace}"

    def covers(self, kind: str, namespace: str | None) -> bool:
        """Whether work of ``kind`` in ``namespace`` is paused by this
        (``namespace`` None: the kind as such, for its informer)."""
        if self.kind is not None and self.kind != kind:
            return False
        if namespace is None:
            return self.namespace is None
        return self.namespace is None or self.namespace == namespace
