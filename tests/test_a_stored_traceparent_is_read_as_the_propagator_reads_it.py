"""A work's parent context, read from the traceparent its inform stored:
the direct reading of the plain form gives what OpenTelemetry's W3C
propagator gives, and any other form is left to the propagator."""

from __future__ import annotations

import pytest
from opentelemetry import trace
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from trio_delta.tracing import OpenTelemetryTracing, _plain_parent  # pyright: ignore[reportPrivateUsage]

TRACE, SPAN = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"


@pytest.mark.parametrize("flags", ["00", "01", "02", "03"])
def test_the_plain_form_reads_as_the_propagator_reads_it(flags: str) -> None:
    traceparent = f"00-{TRACE}-{SPAN}-{flags}"
    read = _plain_parent(traceparent)
    assert read is not None
    context, sampled = read
    ours = trace.get_current_span(context).get_span_context()
    theirs = trace.get_current_span(
        TraceContextTextMapPropagator().extract({"traceparent": traceparent})
    ).get_span_context()
    assert ours == theirs
    assert (ours.trace_id, ours.span_id, ours.is_remote) == (int(TRACE, 16), int(SPAN, 16), True)
    assert sampled is bool(int(flags, 16) & 1)


@pytest.mark.parametrize(
    "traceparent",
    [
        f"00-{TRACE.upper()}-{SPAN}-01",  # not lowercase
        f"00-{'0' * 32}-{SPAN}-01",  # invalid trace id
        f"00-{TRACE}-{'0' * 16}-01",  # invalid span id
        f"ff-{TRACE}-{SPAN}-01",  # a version that is not 00
        f"00-{TRACE}-{SPAN}-01-more",  # more than version 00 has
        f" 00-{TRACE}-{SPAN}-01",
        "garbage",
    ],
)
def test_any_other_form_is_left_to_the_propagator(traceparent: str) -> None:
    assert _plain_parent(traceparent) is None


def test_a_tracestate_goes_through_the_propagator() -> None:
    tracing = OpenTelemetryTracing(trace.NoOpTracerProvider())
    parent = tracing._parent(  # pyright: ignore[reportPrivateUsage]
        {"traceparent": f"00-{TRACE}-{SPAN}-01", "tracestate": "vendor=value"}
    )
    assert parent is not None
    span_context = trace.get_current_span(parent[0]).get_span_context()
    assert span_context.trace_state.get("vendor") == "value"
    assert parent[1] is True
    # An unreadable one: a root span (sampled: asked of the sampler).
    bad = tracing._parent({"traceparent": "garbage"})  # pyright: ignore[reportPrivateUsage]
    assert bad is not None
    assert not trace.get_current_span(bad[0]).get_span_context().is_valid
    assert bad[1] is True


def test_a_tracestate_that_is_not_a_string_is_ignored() -> None:
    tracing = OpenTelemetryTracing(trace.NoOpTracerProvider())
    parent = tracing._parent(  # pyright: ignore[reportPrivateUsage]
        {"traceparent": f"00-{TRACE}-{SPAN}-01", "tracestate": ["not", "hashable"]}
    )
    assert parent is not None
    span_context = trace.get_current_span(parent[0]).get_span_context()
    assert (span_context.trace_id, parent[1]) == (int(TRACE, 16), True)
