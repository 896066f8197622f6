"""Value types of the public API: resource rows, states, options, events."""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from datetime import datetime
from typing import Any, Generic, TypeVar

import msgspec

from ._errors import check_delay

T = TypeVar("T")


class ResourceState(enum.StrEnum):
    """The state of a resource, with values exactly as stored in the database."""

    SCHEDULED = "scheduled"
    """Waiting to be worked at ``scheduled_at``."""
    PENDING = "pending"
    """Claimed by a client and being worked."""
    SYNCED = "synced"
    """``work`` returned: the world matches the object."""
    FAILED = "failed"
    """``work`` raised; will be retried at ``scheduled_at``."""
    DEGRADED = "degraded"
    """Out of attempts; not retried until the object changes."""
    EXPIRED = "expired"
    """Synced, then expired or invalidated: will be worked again."""
    DELETED = "deleted"
    """``work`` raised :class:`ResourceDelete`; removed after retention."""
    UNKNOWN = "unknown"
    """A state this version of the library does not know."""

    @classmethod
    def parse(cls, value: str) -> ResourceState:
        # A dict lookup: ``cls(value)`` costs ten times more, once per row read.
        return _STATES_BY_VALUE.get(value, cls.UNKNOWN)


_STATES_BY_VALUE: dict[str, ResourceState] = {s.value: s for s in ResourceState}


#: States a fetcher may claim from.
CLAIMABLE_STATES: tuple[ResourceState, ...] = (
    ResourceState.SCHEDULED,
    ResourceState.FAILED,
    ResourceState.EXPIRED,
)


@dataclass(frozen=True, slots=True)
class AttemptError:
    """One failed attempt, as recorded in :attr:`ResourceRow.errors`."""

    at: datetime
    attempt: int
    error: str
    trace: str = ""


class _Undecoded:
    def __repr__(self) -> str:
        return "<undecoded>"


#: A row's ``object`` before anything decoded it.
_UNDECODED: Any = _Undecoded()


@dataclass(frozen=True, slots=True)
class ResourceRow(Generic[T]):
    """A resource as stored: the object plus its synchronization state.

    ``object`` is decoded to the controller's object type when the client has a
    controller for ``kind``, else it is the plain JSON value. It is decoded on
    first use: rows read for their state never pay for it.
    """

    id: int
    kind: str
    object_id: str
    namespace: str
    state: ResourceState
    attempt: int
    max_attempts: int
    encoded_object: bytes
    """The object as stored (JSON)."""
    hash: bytes
    """A digest of ``encoded_object``: a changed object has a new hash."""
    metadata: Mapping[str, Any]
    tags: Sequence[str]
    errors: Sequence[AttemptError]
    created_at: datetime
    updated_at: datetime
    scheduled_at: datetime
    attempted_at: datetime | None
    attempted_by: str | None
    synced_at: datetime | None
    priority: int = 0
    """Claims take higher priorities first."""
    snoozes: int = 0
    """How many times work snoozed this resource (:class:`Snooze`)."""
    # The decoded object, set once; not part of the row's value.
    _decoded: Any = field(default=_UNDECODED, compare=False, repr=False)

    @property
    def object(self) -> T:
        value = self._decoded
        if value is _UNDECODED:
            value = msgspec.json.decode(self.encoded_object)
            self._set_decoded(value)
        return value

    def _set_decoded(self, value: Any) -> None:
        # Frozen for users; the row's owner fills in the decoded object once.
        _set_decoded_slot(self, value)


_set_decoded_slot: Callable[[Any, Any], None] = ResourceRow.__dict__["_decoded"].__set__


def _compile_row_builder() -> Callable[..., ResourceRow[Any]]:
    """A function building a :class:`ResourceRow` from its fields, positional
    and in order, without the decoded object.

    The stores build a row for every resource they read (a claim reads
    thousands a second). A frozen dataclass's ``__init__`` writes each of
    the 21 fields through ``object.__setattr__``: 2.2 us a row, a tenth of a
    no-op resource's whole cost. Writing through the slots' own descriptors,
    as this generated function does, takes half that. It is made from the
    dataclass's fields, so it cannot fall out of step with them.
    """
    names = [f.name for f in fields(ResourceRow) if f.name != "_decoded"]
    setters = {f"_set_{name}": ResourceRow.__dict__[name].__set__ for name in names}
    source = (
        f"def build_row({', '.join(names)}):\n"
        "    row = _new(ResourceRow)\n"
        + "".join(f"    _set_{name}(row, {name})\n" for name in names)
        + "    _set_decoded_slot(row, _UNDECODED)\n"
        "    return row\n"
    )
    namespace: dict[str, Any] = {
        "_new": object.__new__,
        "ResourceRow": ResourceRow,
        "_UNDECODED": _UNDECODED,
        "_set_decoded_slot": _set_decoded_slot,
        **setters,
    }
    exec(source, namespace)  # made from the class's own field names, nothing else
    return namespace["build_row"]


build_row = _compile_row_builder()
"""``build_row(id, kind, ..., priority, snoozes)``: a new row, as
``ResourceRow(...)`` with the same positional fields would make it."""


Resource = ResourceRow
"""What :meth:`Controller.work` receives: the claimed row (``state``
``pending``), its ``object`` decoded to the controller's type. The same type
as :class:`ResourceRow`; the name says where it is used."""


@dataclass(frozen=True, slots=True)
class InformOpts:
    """Per-inform options; they override what the object's ``inform_opts()``
    returns.

    ``namespace`` None means the object's default, else ``"default"``.
    """

    namespace: str | None = None
    metadata: Mapping[str, Any] | None = None
    max_attempts: int | None = None
    tags: Sequence[str] | None = None
    priority: int | None = None
    """Claims take higher priorities first (-32768 to 32767). None: the
    kind's :class:`ObjectSettings` priority for a new resource; a changed
    one keeps the priority it has."""
    run_at: datetime | None = None
    """Not worked before this (timezone-aware) time; None: at once."""


@dataclass(frozen=True, slots=True)
class InformOptions:
    """What an informer receives for one run.

    ``after`` is the kind's cursor: the newest ``created_at()`` of an object
    seen by an earlier completed run (None on the first run).
    """

    after: datetime | None = None
    labels: Mapping[str, str] = field(default_factory=dict[str, str])
    limit: int | None = None
    order_by: str | None = None
    process_existing: bool = False


@dataclass(frozen=True, slots=True)
class RequeueAfter:
    """Return from :meth:`Controller.work`: the resource is synced now and
    due again ``seconds`` from now, with no new inform (a controller
    watching something that changes by itself). Its attempts start over."""

    seconds: float

    def __post_init__(self) -> None:
        check_delay("RequeueAfter", self.seconds)


class InformResult(Generic[T]):
    """The result of :meth:`Client.inform`: the resource as stored now.

    Read-only. A bulk inform hands back one per object, and most callers
    read only ``changed``: ``resource`` is built on first use, from what
    the write returned.
    """

    __slots__ = (
        "_already_exists",
        "_build",
        "_changed",
        "_columns",
        "_item",
        "_resource",
        "_stale",
    )

    def __init__(
        self,
        resource: ResourceRow[T],
        already_exists: bool,
        changed: bool = True,
        *,
        stale: bool = False,
    ) -> None:
        self._resource: ResourceRow[T] | None = resource
        self._build: Callable[[Any, Any], ResourceRow[T]] | None = None
        self._item: Any = None
        self._columns: Any = None
        self._already_exists = already_exists
        self._changed = changed
        self._stale = stale

    @classmethod
    def _deferred(
        cls,
        build: Callable[[Any, Any], ResourceRow[T]],
        item: Any,
        columns: Any,
        already_exists: bool,
        changed: bool,
    ) -> InformResult[T]:
        """A result whose row ``build(item, columns)`` makes when it is first
        read. (No closure per result: a bulk inform makes a hundred thousand,
        and every object allocated for them is one more for the garbage
        collector to walk.)"""
        result = cls.__new__(cls)
        result._resource = None
        result._build = build
        result._item = item
        result._columns = columns
        result._already_exists = already_exists
        result._changed = changed
        result._stale = False
        return result

    @property
    def resource(self) -> ResourceRow[T]:
        row = self._resource
        if row is None:
            assert self._build is not None
            row = self._resource = self._build(self._item, self._columns)
            self._build = self._item = self._columns = None
        return row

    @property
    def already_exists(self) -> bool:
        """True when a resource for this kind and id existed before the call."""
        return self._already_exists

    @property
    def changed(self) -> bool:
        """False when the object was unchanged (or older, per ``compare``) and
        nothing was rescheduled."""
        return self._changed

    @property
    def stale(self) -> bool:
        """True when the object was older than the stored one, per its
        ``compare``, and so was not written (``changed`` is False then)."""
        return self._stale

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, InformResult):
            return NotImplemented
        theirs: InformResult[Any] = other  # pyright: ignore[reportUnknownVariableType]
        return (self.resource, self._already_exists, self._changed, self._stale) == (
            theirs.resource,
            theirs.already_exists,
            theirs.changed,
            theirs.stale,
        )

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return (
            f"InformResult(resource={self.resource!r}, "
            f"already_exists={self._already_exists!r}, changed={self._changed!r}, "
            f"stale={self._stale!r})"
        )


class EventCategory(enum.StrEnum):
    """Categories of events a subscriber can ask for."""

    OBJECT_SYNCED = "object_synced"
    OBJECT_FAILED = "object_failed"
    """A failed attempt: ``state`` is ``failed`` (will retry) or ``degraded``."""
    OBJECT_DELETED = "object_deleted"


@dataclass(frozen=True, slots=True)
class Event:
    """A change of a resource's state, delivered to subscribers."""

    category: EventCategory
    resource: ResourceRow[Any]
    timestamp: datetime


@dataclass(frozen=True, slots=True)
class InformerState:
    """A kind's informer schedule, as stored (see :meth:`Client.get_informer`)."""

    kind: str
    cursor: datetime | None
    """``InformOptions.after`` of the next run."""
    next_inform_at: datetime | None
    """When the next periodic run is due (None: periodic runs disabled)."""
    lease_owner: str | None
    """The client running it now, if any."""
    lease_expires_at: datetime | None
    requested_at: datetime | None
    """Set by ``schedule_inform`` until a run serves the request."""
    process_existing: bool
    last_run_at: datetime | None
    last_error: str | None
    """The last run's error, None when it completed."""
