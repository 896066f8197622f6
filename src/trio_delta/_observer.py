"""``Observer``: what a client reports as it works, for metrics.

The engine calls these hooks at the moments an operator's dashboard
counts: a claim, a work's end and its outcome, an outcome batch written,
an inform, an informer run, the leader's census of the whole table.
:class:`trio_delta.metrics.PrometheusMetrics` is one observer; a user may
write another (OpenTelemetry metrics, StatsD) by overriding what it needs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from ._logs import Throttled, get_logger

log = get_logger("trio_delta.observer")

#: What became of a work, as :meth:`Observer.work_ended` names it.
WORK_OUTCOMES = (
    "synced",
    "failed",
    "degraded",
    "deleted",
    "requeued",
    "snoozed",
    "cancelled",
    "handed_back",
)
#: What an inform did to its resource, as :meth:`Observer.informed` names it.
INFORM_RESULTS = ("new", "changed", "unchanged")


class RunningClient(Protocol):
    """What an observer may read of the client it observes (a
    :class:`trio_delta.Client`), for gauges read when scraped."""

    @property
    def id(self) -> str: ...

    @property
    def is_leader(self) -> bool: ...

    @property
    def pool_in_use(self) -> tuple[int, int]: ...


@dataclass(frozen=True, slots=True)
class CensusRow:
    """How many resources of a kind and namespace are in a state, across
    the cluster, and how long the oldest due one has waited (seconds;
    0 when none is due)."""

    kind: str
    namespace: str
    state: str
    count: int
    oldest_due_seconds: float


class Observer:
    """Hooks a client calls as it works; each does nothing unless overridden.

    Called on the client's Trio thread, between its own steps: a hook must
    return quickly and never block. One that raises is logged (at most once
    every few seconds) and otherwise ignored: metrics never stop the work.
    Pass an observer as ``Config(observer=...)``.
    """

    def client_started(self, client: RunningClient) -> None:
        """The client is running (read ``client.is_leader``, ``client.stats``
        or ``client.pool_in_use`` from here on, for gauges read when scraped)."""

    def claimed(self, namespace: str, count: int) -> None:
        """One claim took ``count`` rows (more than 0) of ``namespace``."""

    def work_started(self, kind: str, namespace: str) -> None:
        """A ``work`` call began."""

    def work_ended(self, kind: str, namespace: str, outcome: str, seconds: float) -> None:
        """A work ended after ``seconds``; ``outcome`` is one of
        :data:`WORK_OUTCOMES` (``failed``: to be retried; ``degraded``: out
        of attempts or a ``TerminalError``; ``cancelled``: the resource was
        cancelled or deleted while it ran; ``handed_back``: a forced stop)."""

    def outcomes_written(self, count: int, seconds: float) -> None:
        """One batch of ``count`` outcomes was committed, in ``seconds``."""

    def informed(self, kind: str, result: str, count: int) -> None:
        """``count`` objects of ``kind`` were informed with ``result``, one
        of :data:`INFORM_RESULTS`."""

    def informer_run(self, kind: str, ok: bool, seconds: float, objects: int) -> None:
        """An informer run of ``kind`` ended (``ok``: without an error),
        having written ``objects`` objects."""

    def census(self, rows: Sequence[CensusRow] | None) -> None:
        """The leader's count of every resource by kind, namespace and
        state (every ``census_interval``); None when this client stops
        being the one that counts (it lost leadership or is stopping), so
        that only one process reports the cluster's figures."""


class SafeObserver(Observer):
    """An observer's hooks, with what they raise logged (throttled) and dropped."""

    def __init__(self, observer: Observer) -> None:
        self.observer = observer
        self._storm = Throttled(log)

    def _failed(self, hook: str, exc: Exception) -> None:
        self._storm.warning("observer hook %s raised: %r", hook, exc)

    def client_started(self, client: RunningClient) -> None:
        try:
            self.observer.client_started(client)
        except Exception as exc:
            self._failed("client_started", exc)

    def claimed(self, namespace: str, count: int) -> None:
        try:
            self.observer.claimed(namespace, count)
        except Exception as exc:
            self._failed("claimed", exc)

    def work_started(self, kind: str, namespace: str) -> None:
        try:
            self.observer.work_started(kind, namespace)
        except Exception as exc:
            self._failed("work_started", exc)

    def work_ended(self, kind: str, namespace: str, outcome: str, seconds: float) -> None:
        try:
            self.observer.work_ended(kind, namespace, outcome, seconds)
        except Exception as exc:
            self._failed("work_ended", exc)

    def outcomes_written(self, count: int, seconds: float) -> None:
        try:
            self.observer.outcomes_written(count, seconds)
        except Exception as exc:
            self._failed("outcomes_written", exc)

    def informed(self, kind: str, result: str, count: int) -> None:
        try:
            self.observer.informed(kind, result, count)
        except Exception as exc:
            self._failed("informed", exc)

    def informer_run(self, kind: str, ok: bool, seconds: float, objects: int) -> None:
        try:
            self.observer.informer_run(kind, ok, seconds, objects)
        except Exception as exc:
            self._failed("informer_run", exc)

    def census(self, rows: Sequence[CensusRow] | None) -> None:
        try:
            self.observer.census(rows)
        except Exception as exc:
            self._failed("census", exc)
