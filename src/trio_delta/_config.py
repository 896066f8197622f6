"""Configuration: :class:`Config`, :class:`NamespaceConfig`, :class:`ObjectSettings`.

Every duration is a ``float`` of seconds, as in Trio. Values are checked when
the object is built, so a bad value raises :class:`ConfigError` before any
connection is opened.
"""

from __future__ import annotations

import math
import random
import re
import reprlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from types import MappingProxyType

from ._errors import ConfigError
from ._observer import Observer

HOUR = 3600.0
DAY = 24 * HOUR
MAX_DURATION = 100 * 365 * DAY

# Kind and namespace names appear in logs, NOTIFY payloads and CLI filters.
NAME_RE = re.compile(r"\A[a-z0-9]+(?:[_-][a-z0-9]+)*\Z")
NAME_MAX = 64
# A schema is a Postgres identifier. We keep it to a simple, unquoted-safe
# form so it also fits in a NOTIFY channel name (63 bytes) with our prefix.
SCHEMA_RE = re.compile(r"\A[a-z_][a-z0-9_]{0,39}\Z")


def short(value: object) -> str:
    """``repr(value)``, cut to a readable length for error messages."""
    return _repr.repr(value)


_repr = reprlib.Repr()
_repr.maxstring = _repr.maxother = 80


def check_name(what: str, value: object) -> str:
    if not isinstance(value, str) or not NAME_RE.match(value) or len(value) > NAME_MAX:
        raise ConfigError(
            f"invalid {what} {short(value)}: use 1-{NAME_MAX} of [a-z0-9], "
            "with single '_' or '-' between"
        )
    return value


def check_schema(value: object) -> str:
    if not isinstance(value, str) or not SCHEMA_RE.match(value):
        raise ConfigError(
            f"invalid schema {short(value)}: use 1-40 of [a-z0-9_], not starting with a digit"
        )
    return value


def _check_duration(
    name: str,
    value: object,
    *,
    allow_none: bool = False,
    allow_negative: bool = False,
    allow_zero: bool = True,
) -> None:
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"{name} must be a number of seconds, got {value!r}")
    # Magnitude first: math.isnan() overflows on an int too big for a float.
    if isinstance(value, float) and math.isnan(value):
        raise ConfigError(f"{name} must be finite, got {value!r}")
    if abs(value) > MAX_DURATION:
        # Durations are added to datetimes; beyond this they overflow.
        raise ConfigError(f"{name} must be at most {MAX_DURATION:g} s (100 years), got {value!r}")
    if value < 0 and not allow_negative:
        raise ConfigError(f"{name} must not be negative, got {value!r}")
    if value == 0 and not allow_zero:
        raise ConfigError(f"{name} must be greater than 0, got {value!r}")


def _check_int(
    name: str, value: object, *, minimum: int, maximum: int = 2**31 - 1, allow_none: bool = False
) -> None:
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, int) or not minimum <= value <= maximum:
        raise ConfigError(f"{name} must be an integer from {minimum} to {maximum}, got {value!r}")


#: Priorities a resource may have (the column is a smallint).
PRIORITY_MIN, PRIORITY_MAX = -32768, 32767


def check_priority(name: str, value: object) -> None:
    _check_int(name, value, minimum=PRIORITY_MIN, maximum=PRIORITY_MAX)


def _encodable(text: str) -> bool:
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


def default_retry_policy(attempt: int) -> float:
    """Seconds until retry after failed attempt number ``attempt`` (1-based).

    ``attempt ** 4`` as in River, capped at one day: 1 s, 16 s, 81 s, 256 s, ...
    """
    return float(min(attempt**4, DAY))


#: Attempts before a resource is degraded, unless its object or client says.
DEFAULT_MAX_ATTEMPTS = 10
#: Work calls a namespace runs at once by default. A claim takes at most half
#: of a namespace's free workers, so with short work the workers bound how
#: much each round trip brings: no-op work drained 6,400 resources/s with 10,
#: 17,100 with 50. Lower it for work that must not run 50 at a time.
DEFAULT_MAX_WORKERS = 50


@dataclass(frozen=True, slots=True)
class NamespaceConfig:
    """Limits and retention for one namespace.

    ``None`` retention means :class:`Config`'s value. ``resource_expiry``
    expires synced resources older than it, so they are worked again; it
    cannot be combined with ``synced_retention`` (a synced resource would be
    both kept and expired).
    """

    max_workers: int = DEFAULT_MAX_WORKERS
    prefetch: int = 0
    """Rows claimed ahead of free workers: a worker whose work ends starts
    its next row at once instead of after a claim's round trip (I/O-bound
    work gains most). Each waits in this client, ``pending`` in the
    database, until a worker takes it; kind ``parallelism`` caps count it."""
    resource_expiry: float | None = None
    synced_retention: float | None = None
    degraded_retention: float | None = None
    deleted_retention: float | None = None

    def __post_init__(self) -> None:
        _check_int("NamespaceConfig.max_workers", self.max_workers, minimum=1)
        _check_int("NamespaceConfig.prefetch", self.prefetch, minimum=0)
        _check_duration(
            "NamespaceConfig.resource_expiry",
            self.resource_expiry,
            allow_none=True,
            allow_zero=False,
        )
        for name in ("synced_retention", "degraded_retention", "deleted_retention"):
            _check_duration(f"NamespaceConfig.{name}", getattr(self, name), allow_none=True)
        if self.resource_expiry is not None and self.synced_retention is not None:
            raise ConfigError("NamespaceConfig: set resource_expiry or synced_retention, not both")


@dataclass(frozen=True, slots=True)
class RateLimit:
    """At most ``per_second`` work starts a second across every client, with
    bursts of up to ``burst`` (a token bucket kept in the database)."""

    per_second: float
    burst: int = 1

    def __post_init__(self) -> None:
        rate = self.per_second
        if isinstance(rate, bool) or not isinstance(rate, int | float) or not 0 < rate < math.inf:
            raise ConfigError(f"RateLimit.per_second must be a number > 0, got {rate!r}")
        _check_int("RateLimit.burst", self.burst, minimum=1)


@dataclass(frozen=True, slots=True)
class ObjectSettings:
    """Per-kind settings, returned by an object class's ``settings()``.

    ``parallelism`` caps the kind's concurrent work in one client (None: only
    the namespace's ``max_workers``). ``inform_interval`` overrides
    :attr:`Config.inform_interval` (negative: no periodic runs and no
    start-up run, the informer runs only on demand).
    """

    parallelism: int | None = None
    inform_interval: float | None = None
    retry_policy: Callable[[int], float] | None = None
    """The kind's retry delays (None: :attr:`Config.retry_policy`)."""
    max_attempts: int | None = None
    """Attempts before a resource of the kind is degraded, when its inform
    does not say (None: :attr:`Config.max_attempts`)."""
    work_timeout: float | None = None
    """Longest one work of the kind may run (None: :attr:`Config.work_timeout`)."""
    priority: int = 0
    """Priority of a new resource of the kind whose inform gives none."""
    global_parallelism: int | None = None
    """The most works of the kind running at once across every client on
    the database (None: no such cap). Counts the kind's pending rows."""
    rate_limit: RateLimit | None = None
    """Most work starts of the kind a second, across every client (None:
    no limit). Works beyond it wait, scheduled; they spend no attempt."""

    def __post_init__(self) -> None:
        _check_int("ObjectSettings.parallelism", self.parallelism, minimum=1, allow_none=True)
        if self.retry_policy is not None and not callable(self.retry_policy):
            raise ConfigError(
                f"ObjectSettings.retry_policy must be callable, got {self.retry_policy!r}"
            )
        _check_int(
            "ObjectSettings.max_attempts",
            self.max_attempts,
            minimum=1,
            maximum=32767,
            allow_none=True,
        )
        _check_duration(
            "ObjectSettings.work_timeout", self.work_timeout, allow_none=True, allow_zero=False
        )
        check_priority("ObjectSettings.priority", self.priority)
        _check_int(
            "ObjectSettings.global_parallelism",
            self.global_parallelism,
            minimum=1,
            allow_none=True,
        )
        if self.rate_limit is not None and not isinstance(self.rate_limit, RateLimit):
            raise ConfigError(
                f"ObjectSettings.rate_limit must be a RateLimit, got {self.rate_limit!r}"
            )
        _check_duration(
            "ObjectSettings.inform_interval",
            self.inform_interval,
            allow_none=True,
            allow_negative=True,
        )


@dataclass(frozen=True, slots=True)
class Config:
    """Client configuration. Every field has a default; durations are seconds."""

    schema: str = "delta"
    """Postgres schema holding trio_delta's tables."""
    work_timeout: float = 60.0
    """Longest one ``work`` call may run before it is cancelled and failed."""
    inform_timeout: float = 60.0
    """Longest one informer run may take."""
    inform_interval: float = HOUR
    """Default time between informer runs of a kind. Negative: no periodic
    runs and no run at start-up (a kind's first client included); the
    informer runs only when asked (``schedule_inform``)."""
    inform_jitter: float = 60.0
    """Up to this much random delay is added to each informer run."""
    retry_policy: Callable[[int], float] = default_retry_policy
    """Attempt number (1-based) -> seconds until the retry."""
    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    """Attempts before a resource is degraded, unless the object says otherwise."""
    poll_interval: float = 1.0
    """The fetcher looks for work at least this often even without a NOTIFY."""
    listen: bool = True
    """Hold a LISTEN connection and wake on notifications. False: poll
    only, every ``poll_interval`` (for poolers and proxies that cannot
    carry LISTEN); a cancel then reaches running work at the next poll."""
    listen_dsn: str | None = field(default=None, repr=False)
    """Where the LISTEN connection goes, if not where the client's DSN does:
    the primary, directly, while statements go through a transaction-mode
    pooler (which cannot carry LISTEN). None: the client's DSN. Kept out of
    ``repr``: it may hold a password."""
    prepared_statements: bool = True
    """False: no server-side prepared statements and no session settings
    (each call applies its settings to its own transaction, ``SET LOCAL``),
    so every statement is safe on a transaction-mode pooler such as
    PgBouncer with ``pool_mode = transaction``. Costs a second round trip
    on the calls that have settings (claims, outcomes, informs)."""
    dedicated_connections: bool = True
    """Claims, outcomes, informer batches and the leader each hold a
    connection of their own (up to five, opened on first use). False: they
    borrow from the pool, so a client holds at most ``pool_size``
    connections, plus one for LISTEN; for deployments with many processes."""
    leader_ttl: float = 15.0
    """Leadership lasts this long unless renewed (renewed every third)."""
    lock_timeout: float = 10.0
    """Longest an inform waits for a row another transaction holds before it
    fails with ``LockTimeoutError``; it also bounds every lock wait on the
    client's own connections, and an outcome held up longer is logged."""
    maintenance_interval: float = 60.0
    """The leader runs rescuer, expirer and cleaner this often."""
    rescue_after: float = 60.0
    """A pending resource is rescued once ``work_timeout + rescue_after`` passed."""
    synced_retention: float = DAY
    degraded_retention: float = DAY
    deleted_retention: float = DAY
    shutdown_grace: float = 10.0
    """On stop, in-flight work may finish within this; then it is cancelled."""
    batch_size: int = 200
    """Most rows one claim, outcome or upsert statement carries."""
    flush_interval: float = 0.002
    """Informed objects wait at most this long for an informer batch to fill
    (outcomes never wait: the completer writes whatever is ready)."""
    event_buffer: int = 1000
    """Events a subscriber may fall behind before new ones are dropped."""
    pool_size: int | None = None
    """Database connections; None sizes it from the namespaces' workers."""
    client_id: str | None = None
    """Identifies the client in ``attempted_by``; None makes a unique one."""
    driver: str = "native"
    """How psycopg runs on Trio: ``"native"`` (Trio waits on libpq's socket
    directly; the fast default) or ``"trio-asyncio"`` (psycopg's asyncio code
    on a trio-asyncio loop)."""
    async_commit: bool = True
    """Claims, outcomes and the leader's renewals commit without waiting for
    the WAL flush (``synchronous_commit = off`` on those connections only).
    One lost in a database crash is safe to lose: the row stays claimable,
    or pending until the rescuer retries it, so at-least-once holds and a
    work may run again. Informs always wait for the flush. False: every
    commit waits, as the peers' job queues do by default (slower drains)."""
    claim_on_inform: bool = True
    """A single :meth:`~Client.inform` into a namespace this client works,
    made while the client is idle (nothing running, nothing due, the kind
    neither paused nor bounded cluster-wide), claims its row in the same
    statement: its work starts when the call returns, with no claim round
    trip. The result's resource is then ``pending``, attempt 1. False:
    every inform leaves its row ``scheduled`` for the next claim."""
    observer: Observer | None = field(default=None, compare=False, repr=False)
    """Hooks told what the client does, for metrics (an :class:`Observer`,
    such as ``trio_delta.metrics.PrometheusMetrics()``); None: none."""
    census_interval: float = 15.0
    """With an observer, the leader counts every resource by kind,
    namespace and state this often, for its ``census`` hook."""
    asyncio: bool = False
    """Run the client inside a trio-asyncio loop, so that ``work`` and
    ``inform`` may await asyncio-only libraries through
    ``trio_asyncio.aio_as_trio``; a work timeout or forced stop cancels the
    asyncio side too. Needs trio-asyncio to load (not on Python 3.14)."""
    random: random.Random = field(default_factory=random.Random, compare=False)
    """Source of jitter and ids; seed it for reproducible tests."""

    def __post_init__(self) -> None:
        check_schema(self.schema)
        for f in fields(self):
            if f.name in {"inform_interval"}:
                _check_duration(f.name, getattr(self, f.name), allow_negative=True)
            elif f.name in {
                "work_timeout",
                "inform_timeout",
                "poll_interval",
                "leader_ttl",
                "lock_timeout",
                "maintenance_interval",
                "flush_interval",
                "census_interval",
            }:
                _check_duration(f.name, getattr(self, f.name), allow_zero=False)
            elif f.name in {
                "inform_jitter",
                "rescue_after",
                "synced_retention",
                "degraded_retention",
                "deleted_retention",
                "shutdown_grace",
            }:
                _check_duration(f.name, getattr(self, f.name))
        _check_int("max_attempts", self.max_attempts, minimum=1, maximum=32767)
        _check_int("batch_size", self.batch_size, minimum=1)
        _check_int("event_buffer", self.event_buffer, minimum=0)
        _check_int("pool_size", self.pool_size, minimum=2, allow_none=True)
        for flag in (
            "asyncio",
            "async_commit",
            "claim_on_inform",
            "listen",
            "prepared_statements",
            "dedicated_connections",
        ):
            if not isinstance(getattr(self, flag), bool):
                raise ConfigError(f"{flag} must be True or False, got {getattr(self, flag)!r}")
        if self.driver not in ("native", "trio-asyncio"):
            raise ConfigError(f"driver must be 'native' or 'trio-asyncio', got {self.driver!r}")
        if not callable(self.retry_policy):
            raise ConfigError(f"retry_policy must be callable, got {self.retry_policy!r}")
        if self.client_id is not None and (
            not isinstance(self.client_id, str)
            or not 0 < len(self.client_id) <= 128
            or not self.client_id.isprintable()
            or not _encodable(self.client_id)
        ):
            raise ConfigError(
                f"client_id must be 1-128 printable characters, got {self.client_id!r}"
            )
        if self.listen_dsn is not None and not isinstance(self.listen_dsn, str):
            raise ConfigError("listen_dsn must be a connection string or None")
        if self.listen_dsn is not None and not self.listen:
            raise ConfigError("listen_dsn is set but listen is False: nothing would use it")
        if self.observer is not None and not isinstance(self.observer, Observer):
            raise ConfigError(f"observer must be a trio_delta.Observer, got {self.observer!r}")
        if not isinstance(self.random, random.Random):
            raise ConfigError(f"random must be a random.Random, got {self.random!r}")


def check_namespaces(
    namespaces: Mapping[str, NamespaceConfig] | None,
) -> Mapping[str, NamespaceConfig]:
    """Validate and freeze the ``namespaces`` argument of ``open_delta_client``."""
    if namespaces is None:
        return MappingProxyType({"default": NamespaceConfig()})
    if not isinstance(namespaces, Mapping) or not namespaces:
        raise ConfigError("namespaces must be a non-empty mapping of name -> NamespaceConfig")
    out: dict[str, NamespaceConfig] = {}
    for name, ns in namespaces.items():
        check_name("namespace", name)
        if not isinstance(ns, NamespaceConfig):
            raise ConfigError(f"namespace {name!r}: expected NamespaceConfig, got {ns!r}")
        out[name] = ns
    return MappingProxyType(out)


def retention_for(config: Config, ns: NamespaceConfig, which: str) -> float:
    value: float | None = getattr(ns, f"{which}_retention")
    return value if value is not None else float(getattr(config, f"{which}_retention"))
