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
``trio_delta.informer <kind>`` around each informer run, with the objects
it wrote and its outcome (``ok`` or ``failed``, an error status then). Only the
``opentelemetry-api`` package is needed; export spans with the SDK as
usual.

A work whose inform was not sampled makes no span of its own: it runs in
that inform's context, so its calls carry the trace id with the sampled
flag off. That is what OpenTelemetry's default, parent-based, sampler
decides, at a quarter of the cost of asking it. A provider whose sampler
may record such a work (``ALWAYS_ON``, a parent-based one that samples
under unsampled remote parents) needs ``follow_inform_sampling=False``.
"""

from __future__ import annotations

import re
from collections.abc import Generator, Mapping
from contextlib import AbstractContextManager, contextmanager
from typing import Any

from opentelemetry import trace
from opentelemetry.context import Context, attach, detach
from opentelemetry.trace import (
    INVALID_SPAN_ID,
    INVALID_TRACE_ID,
    NonRecordingSpan,
    Span,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
    TracerProvider,
)
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from ._observer import Finish, InformerFinish, Observer

__all__ = ["OpenTelemetryTracing"]

#: Parsed trace contexts kept, by traceparent.
PARENTS_KEPT = 1024
#: Outcomes that are errors for the span's status.
FAILED = frozenset({"failed", "degraded"})


#: The traceparent an inform stores: W3C version 00, no tracestate beside it.
_PLAIN_TRACEPARENT = re.compile(r"00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})")


def _plain_parent(traceparent: str) -> tuple[Context, bool] | None:
    """The context of a plain ``traceparent`` (what an inform stores) and
    whether it was sampled, read directly: each request's inform has a
    trace of its own, so there is no parse to reuse, and the propagator's
    general one cost three times as much, a work's largest tracing cost
    when its inform was not sampled. None for any other form (the
    propagator reads it, and decides what is invalid)."""
    match = _PLAIN_TRACEPARENT.fullmatch(traceparent)
    if match is None:
        return None
    trace_id, span_id = int(match[1], 16), int(match[2], 16)
    if trace_id == INVALID_TRACE_ID or span_id == INVALID_SPAN_ID:
        return None
    flags = TraceFlags(int(match[3], 16))
    span_context = SpanContext(trace_id, span_id, is_remote=True, trace_flags=flags)
    return trace.set_span_in_context(NonRecordingSpan(span_context), Context()), flags.sampled


class _CurrentSpan:
    """``span`` current while a work runs (its children, an HTTP client's
    say, join the trace), told the work's outcome, ended afterwards.

    Written out rather than with OpenTelemetry's ``start_as_current_span``:
    per work, its layers of generator context managers cost a third as much
    again as the span itself.
    """

    __slots__ = ("_span", "_token")

    def __init__(self, span: Span) -> None:
        self._span = span

    def __enter__(self) -> Finish | None:
        self._token = attach(trace.set_span_in_context(self._span))
        # Not sampled: nothing to tell it, so no finish for the engine to call.
        return self._finish if self._span.is_recording() else None

    def __exit__(self, *exc_info: object) -> None:
        try:
            detach(self._token)
        finally:
            self._span.end()

    def _finish(self, outcome: str, error: BaseException | None) -> None:
        span = self._span
        span.set_attribute("trio_delta.outcome", outcome)
        if error is not None and outcome in FAILED:
            span.record_exception(error)
            span.set_status(Status(StatusCode.ERROR, f"{type(error).__name__}: {error}"))


class _UnsampledParent:
    """The stored context current while a work runs, with no span of its
    own: the inform that caused the work was not sampled, so neither is the
    work (as OpenTelemetry's default, parent-based, sampling decides), and
    its calls still carry the trace's id with the sampled flag off."""

    __slots__ = ("_context", "_token")

    def __init__(self, context: Context) -> None:
        self._context = context

    def __enter__(self) -> None:
        self._token = attach(self._context)

    def __exit__(self, *exc_info: object) -> None:
        detach(self._token)


class OpenTelemetryTracing(Observer):
    """An :class:`~trio_delta.Observer` that makes OpenTelemetry spans.

    ``tracer_provider``: where spans go (OpenTelemetry's global provider
    when None). ``follow_inform_sampling``: a work whose inform was not
    sampled makes no span, without asking the provider's sampler (see the
    module's documentation); False asks it for every work.
    """

    def __init__(
        self,
        tracer_provider: TracerProvider | None = None,
        *,
        follow_inform_sampling: bool = True,
    ) -> None:
        self._tracer = trace.get_tracer("trio_delta", tracer_provider=tracer_provider)
        self._follow_inform_sampling = follow_inform_sampling
        # Its own propagator: the application's global one may carry more
        # (baggage) or other formats; the resource stores W3C trace context.
        self._propagator = TraceContextTextMapPropagator()
        self._parents: dict[tuple[str, object], tuple[Context, bool]] = {}

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

    def _parent(self, metadata: Mapping[str, Any]) -> tuple[Context, bool] | None:
        """The context a resource's metadata carries, and whether it was
        sampled. The resources of one ``inform_many`` share it: parsed once,
        not once per work (parsing was a tenth of a span's cost)."""
        traceparent = metadata.get("traceparent")
        if not isinstance(traceparent, str):
            return None
        tracestate = metadata.get("tracestate")
        # Anything but a string is no tracestate (and may not even hash).
        key = (traceparent, tracestate if isinstance(tracestate, str) else None)
        parent = self._parents.get(key)
        if parent is None:
            if len(self._parents) >= PARENTS_KEPT:
                self._parents.clear()
            parent = None if key[1] is not None else _plain_parent(traceparent)
            if parent is None:
                carrier = {"traceparent": traceparent}
                if key[1] is not None:
                    carrier["tracestate"] = key[1]
                context = self._propagator.extract(carrier)
                span_context = trace.get_current_span(context).get_span_context()
                # An unreadable traceparent gives an invalid span context: a
                # root span then, as for a resource that stored none.
                sampled = span_context.trace_flags.sampled or not span_context.is_valid
                parent = (context, sampled)
            self._parents[key] = parent
        return parent

    def trace_work(
        self, kind: str, namespace: str, object_id: str, attempt: int, metadata: Mapping[str, Any]
    ) -> AbstractContextManager[Finish | None]:
        parent = self._parent(metadata)
        if parent is not None and not parent[1] and self._follow_inform_sampling:
            return _UnsampledParent(parent[0])
        # No stored context: a trace of its own, not a child of whatever
        # span was current where the client was opened (its tasks inherit it).
        span = self._tracer.start_span(
            f"trio_delta.work {kind}",
            context=Context() if parent is None else parent[0],
            kind=SpanKind.CONSUMER,
            attributes={
                "trio_delta.kind": kind,
                "trio_delta.namespace": namespace,
                "trio_delta.object_id": object_id,
                "trio_delta.attempt": attempt,
            },
            record_exception=False,
            set_status_on_exception=False,
        )
        return _CurrentSpan(span)

    @contextmanager
    def trace_informer_run(self, kind: str) -> Generator[InformerFinish, None, None]:
        with self._tracer.start_as_current_span(
            f"trio_delta.informer {kind}", context=Context(), attributes={"trio_delta.kind": kind}
        ) as span:

            def finish(objects: int, error: str | None) -> None:
                span.set_attribute("trio_delta.objects", objects)
                span.set_attribute("trio_delta.outcome", "ok" if error is None else "failed")
                if error is not None:
                    span.set_status(Status(StatusCode.ERROR, error))

            yield finish
