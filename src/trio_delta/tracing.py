"""OpenTelemetry traces for a client: ``pip install 'trio-delta[tracing]'``.

::

    from trio_delta.tracing import OpenTelemetryTracing

    config = delta.Config(observer=OpenTelemetryTracing())   # the global provider

Spans: ``trio_delta.inform <kind>`` around each inform call, a child of
whatever span is current (a request's), whose context is stored in the
informed resources' metadata (``traceparent``, W3C trace context, as River
and pgqueuer store theirs); ``trio_delta.work <kind>`` around each work
call, a child of that inform's span, so that a trace shows request ->
inform -> work, with a retry as a second work span; and
``trio_delta.informer <kind>`` around each informer run. Only the
``opentelemetry-api`` package is needed; export spans with the SDK as
usual.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Mapping
from contextlib import contextmanager
from typing import Any

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import SpanKind, Status, StatusCode, TracerProvider
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from ._observer import Observer

__all__ = ["OpenTelemetryTracing"]

#: Parsed trace contexts kept, by traceparent.
PARENTS_KEPT = 1024
#: Outcomes that are errors for the span's status.
FAILED = frozenset({"failed", "degraded"})


class OpenTelemetryTracing(Observer):
    """An :class:`~trio_delta.Observer` that makes OpenTelemetry spans.

    ``tracer_provider``: where spans go (OpenTelemetry's global provider
    when None).
    """

    def __init__(self, tracer_provider: TracerProvider | None = None) -> None:
        self._tracer = trace.get_tracer("trio_delta", tracer_provider=tracer_provider)
        # Its own propagator: the application's global one may carry more
        # (baggage) or other formats; the resource stores W3C trace context.
        self._propagator = TraceContextTextMapPropagator()
        self._parents: dict[tuple[str, object], Context] = {}

    @contextmanager
    def trace_inform(self, kind: str, count: int) -> Generator[Mapping[str, str], None, None]:
        with self._tracer.start_as_current_span(
            f"trio_delta.inform {kind}",
            kind=SpanKind.PRODUCER,
            attributes={"trio_delta.kind": kind, "trio_delta.objects": count},
        ):
            carrier: dict[str, str] = {}
            self._propagator.inject(carrier)
            yield carrier

    def _parent(self, metadata: Mapping[str, Any]) -> Context | None:
        """The context a resource's metadata carries. The resources of one
        ``inform_many`` share it: parsed once, not once per work (parsing
        was a tenth of a span's cost)."""
        traceparent = metadata.get("traceparent")
        if not isinstance(traceparent, str):
            return None
        key = (traceparent, metadata.get("tracestate"))
        parent = self._parents.get(key)
        if parent is None:
            if len(self._parents) >= PARENTS_KEPT:
                self._parents.clear()
            carrier = {"traceparent": traceparent}
            if isinstance(key[1], str):
                carrier["tracestate"] = key[1]
            parent = self._parents[key] = self._propagator.extract(carrier)
        return parent

    @contextmanager
    def trace_work(
        self, kind: str, namespace: str, object_id: str, attempt: int, metadata: Mapping[str, Any]
    ) -> Generator[Callable[[str, BaseException | None], None], None, None]:
        # No stored context: a trace of its own, not a child of whatever
        # span was current where the client was opened (its tasks inherit it).
        parent = self._parent(metadata) or Context()
        with self._tracer.start_as_current_span(
            f"trio_delta.work {kind}",
            context=parent,
            kind=SpanKind.CONSUMER,
            attributes={
                "trio_delta.kind": kind,
                "trio_delta.namespace": namespace,
                "trio_delta.object_id": object_id,
                "trio_delta.attempt": attempt,
            },
            record_exception=False,
            set_status_on_exception=False,
        ) as span:

            def finish(outcome: str, error: BaseException | None) -> None:
                span.set_attribute("trio_delta.outcome", outcome)
                if error is not None and outcome in FAILED:
                    span.record_exception(error)
                    span.set_status(Status(StatusCode.ERROR, f"{type(error).__name__}: {error}"))

            yield finish

    @contextmanager
    def trace_informer_run(self, kind: str) -> Generator[None, None, None]:
        with self._tracer.start_as_current_span(
            f"trio_delta.informer {kind}", context=Context(), attributes={"trio_delta.kind": kind}
        ):
            yield
