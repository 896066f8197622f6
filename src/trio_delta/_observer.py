"""``Observer``: what a client reports as it works, for metrics.

The engine calls these hooks at the moments an operator's dashboard
counts: a claim, a work's end and its outcome, an outcome batch written,
an inform, an informer run, the leader's census of the whole table.
:class:`trio_delta.metrics.PrometheusMetrics` is one observer; a user may
write another (OpenTelemetry metrics, StatsD) by overriding what it needs.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterable, Mapping, Sequence
from contextlib import AbstractContextManager, ExitStack, contextmanager, nullcontext
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Generic, Protocol, TypeAlias, TypeVarTuple, cast

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
INFORM_RESULTS = ("new", "changed", "unchanged", "stale")
#: What :meth:`Observer.trace_work` yields: told a work's outcome (as
#: :meth:`Observer.work_ended` names it) and its exception, if any.
Finish: TypeAlias = Callable[[str, BaseException | None], None]
#: What :meth:`Observer.trace_informer_run` yields: told how many objects
#: the run wrote and its error (None when it ended well).
InformerFinish: TypeAlias = Callable[[int, str | None], None]


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

    # -- traces: context managers around what they trace -------------------

    def trace_inform(
        self, kind: str, count: int
    ) -> AbstractContextManager[Mapping[str, str] | None]:
        """Wraps an inform of ``count`` objects of ``kind`` (a span); yields
        entries to store in the informed resources' metadata (the trace
        context, for :meth:`trace_work` to continue), or None."""
        return nullcontext(None)

    def trace_work(
        self, kind: str, namespace: str, object_id: str, attempt: int, metadata: Mapping[str, Any]
    ) -> AbstractContextManager[Finish | None]:
        """Wraps one ``work`` call (a span, whose parent the resource's
        ``metadata`` may carry); yields a function told the outcome (as in
        :meth:`work_ended`) and the exception, if any, before the span ends."""
        return nullcontext(None)

    def trace_informer_run(self, kind: str) -> AbstractContextManager[InformerFinish | None]:
        """Wraps one informer run of ``kind`` (a span); yields a function
        told, before the span ends, how many objects the run wrote and its
        error (None when it ended well), or None."""
        return nullcontext(None)


class Observers(Observer):
    """Several observers as one (metrics and traces, say): each hook calls
    each observer in turn; trace contexts nest in that order. One that
    raises does not keep the others from hearing: the first error is
    raised once every observer was called (the client logs it)."""

    def __init__(self, *observers: Observer) -> None:
        self.observers = observers

    def _each(self, hook: str, *args: Any) -> None:
        _call_all([getattr(o, hook) for o in self.observers], *args)

    def client_started(self, client: RunningClient) -> None:
        self._each("client_started", client)

    def claimed(self, namespace: str, count: int) -> None:
        self._each("claimed", namespace, count)

    def work_started(self, kind: str, namespace: str) -> None:
        self._each("work_started", kind, namespace)

    def work_ended(self, kind: str, namespace: str, outcome: str, seconds: float) -> None:
        self._each("work_ended", kind, namespace, outcome, seconds)

    def outcomes_written(self, count: int, seconds: float) -> None:
        self._each("outcomes_written", count, seconds)

    def informed(self, kind: str, result: str, count: int) -> None:
        self._each("informed", kind, result, count)

    def informer_run(self, kind: str, ok: bool, seconds: float, objects: int) -> None:
        self._each("informer_run", kind, ok, seconds, objects)

    def census(self, rows: Sequence[CensusRow] | None) -> None:
        self._each("census", rows)

    @contextmanager
    def trace_inform(
        self, kind: str, count: int
    ) -> Generator[Mapping[str, str] | None, None, None]:
        with ExitStack() as stack:
            merged: dict[str, str] = {}
            for o in self.observers:
                merged.update(stack.enter_context(o.trace_inform(kind, count)) or {})
            yield merged or None

    @contextmanager
    def trace_work(
        self, kind: str, namespace: str, object_id: str, attempt: int, metadata: Mapping[str, Any]
    ) -> Generator[Finish | None, None, None]:
        with ExitStack() as stack:
            managers = (
                o.trace_work(kind, namespace, object_id, attempt, metadata) for o in self.observers
            )
            yield _entered_finish(stack, managers)

    @contextmanager
    def trace_informer_run(self, kind: str) -> Generator[InformerFinish | None, None, None]:
        with ExitStack() as stack:
            yield _entered_finish(stack, (o.trace_informer_run(kind) for o in self.observers))


def _entered_finish(
    stack: ExitStack, managers: Iterable[AbstractContextManager[Any]]
) -> Callable[..., None] | None:
    """Enter each of ``managers`` in turn on ``stack``; one finish function
    calling every finish function they yield (None if none yields one)."""
    finishers = [f for m in managers if callable(f := stack.enter_context(m))]
    if not finishers:
        return None

    def finish(*args: Any) -> None:
        _call_all(finishers, *args)

    return finish


def _call_all(functions: Sequence[Callable[..., object]], *args: Any) -> None:
    """Call each of ``functions``; the first error is raised after all ran."""
    failure: Exception | None = None
    for function in functions:
        try:
            function(*args)
        except Exception as exc:
            failure = failure or exc
    if failure is not None:
        raise failure


def traces(observer: Observer) -> bool:
    """Whether ``observer`` overrides any trace hook (else none is called)."""
    if isinstance(observer, Observers):
        return any(traces(o) for o in observer.observers)
    own = type(observer)
    return any(
        getattr(own, name) is not getattr(Observer, name)
        for name in ("trace_inform", "trace_work", "trace_informer_run")
    )


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

    def trace_inform(
        self, kind: str, count: int
    ) -> AbstractContextManager[Mapping[str, str] | None]:
        return _Guarded(self, "trace_inform", self.observer.trace_inform, (kind, count))

    def trace_work(
        self, kind: str, namespace: str, object_id: str, attempt: int, metadata: Mapping[str, Any]
    ) -> AbstractContextManager[Finish | None]:
        return _Guarded(
            self,
            "trace_work",
            self.observer.trace_work,
            (kind, namespace, object_id, attempt, metadata),
        )

    def trace_informer_run(self, kind: str) -> AbstractContextManager[InformerFinish | None]:
        return _Guarded(self, "trace_informer_run", self.observer.trace_informer_run, (kind,))


#: The trace hooks whose value, if callable, is a finish function.
_FINISHING_HOOKS = frozenset({"trace_work", "trace_informer_run"})
#: A trace hook's arguments, checked against the hook it is given with.
Ts = TypeVarTuple("Ts")


class _Guarded(Generic[*Ts]):
    """A trace hook's context manager, guarded: one that raises as it is
    made, or as its span opens, is logged and skipped (the work goes on
    untraced); what the traced code raises goes on as it is, a Cancelled
    included: the observer may neither swallow nor replace it.

    A class holding the hook and its arguments, not a generator context
    manager or closures: it wraps every work call, and when the hook yields
    a work's finish function, the guard itself stands in for it."""

    __slots__ = ("_args", "_finish", "_hook", "_make", "_manager", "_safe")

    def __init__(
        self,
        safe: SafeObserver,
        hook: str,
        make: Callable[[*Ts], AbstractContextManager[Any]],
        args: tuple[*Ts],
    ) -> None:
        self._safe = safe
        self._hook = hook
        self._make = make
        self._args = args
        self._manager: AbstractContextManager[Any] | None = None

    def __enter__(self) -> Any:
        try:
            manager = self._make(*self._args)
            value = manager.__enter__()
        except Exception as exc:
            self._safe._failed(self._hook, exc)  # pyright: ignore[reportPrivateUsage]
            return None
        self._manager = manager
        if callable(value):  # a finish function: called by the engine, guarded too
            self._finish = cast("Callable[..., None]", value)
            return self
        # What else a work's or a run's hook yields (a span, say: its
        # context manager's value) is not for the engine, which would call it.
        return None if self._hook in _FINISHING_HOOKS else value

    def __call__(self, *args: Any) -> None:
        try:
            self._finish(*args)
        except Exception as exc:
            self._safe._failed(self._hook, exc)  # pyright: ignore[reportPrivateUsage]

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._manager is None:
            return
        try:
            self._manager.__exit__(exc_type, exc, tb)
        except Exception as exit_error:
            self._safe._failed(self._hook, exit_error)  # pyright: ignore[reportPrivateUsage]
