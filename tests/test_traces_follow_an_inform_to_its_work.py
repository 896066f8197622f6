"""OpenTelemetry traces: request -> inform -> work, a retry as a second
work span, each with its attributes; seen with the SDK's in-memory
exporter."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import pytest
import trio
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import (
    ALWAYS_OFF,
    ALWAYS_ON,
    Decision,
    Sampler,
    SamplingResult,
)
from opentelemetry.trace import StatusCode
from opentelemetry.util.types import Attributes

import trio_delta as delta
from trio_delta.tracing import OpenTelemetryTracing

from .models import RecordingController, User, controllers_for


async def test_a_trace_runs_from_the_request_through_the_inform_to_each_work(
    pg_dsn: str, config: delta.Config
) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    cfg = dataclasses.replace(config, observer=OpenTelemetryTracing(provider))
    controller = RecordingController()
    controller.fail = {"t@x": 1}  # attempt 1 fails, attempt 2 syncs
    app = provider.get_tracer("app")
    # Opened inside a span: its tasks inherit that context, which must not
    # become the parent of every work.
    with app.start_as_current_span("startup"):
        client_cm = delta.open_delta_client(pg_dsn, controllers_for(controller), config=cfg)
        client = await client_cm.__aenter__()
    try:
        with app.start_as_current_span("request"):
            await client.inform(User("t@x", "n", 1), delta.InformOpts(metadata={"mine": "kept"}))
        await client.inform(User("other@x", "n", 1))  # no request around it
        # Informed by a client that does not trace: no context stored.
        async with delta.open_delta_client(pg_dsn, delta.Controllers(), config=config) as plain:
            await plain.inform(User("plain@x", "n", 1))
        with trio.fail_after(10):
            while len(controller.worked) < 4:
                await trio.sleep(0.02)
        row = await client.get_resource("user", "t@x")
    finally:
        await client_cm.__aexit__(None, None, None)
    spans = exporter.get_finished_spans()
    (request,) = [s for s in spans if s.name == "request"]
    informs = [s for s in spans if s.name == "trio_delta.inform user"]
    inform = next(s for s in informs if s.parent is not None)
    assert inform.parent.span_id == request.context.span_id  # type: ignore[union-attr]
    assert inform.context.trace_id == request.context.trace_id  # type: ignore[union-attr]

    works = sorted(
        (
            s
            for s in spans
            if s.name == "trio_delta.work user" and s.attributes["trio_delta.object_id"] == "t@x"  # type: ignore[index]
        ),
        key=lambda s: s.attributes["trio_delta.attempt"],  # type: ignore[index]
    )
    assert [w.attributes["trio_delta.attempt"] for w in works] == [1, 2]  # type: ignore[index]
    assert [w.attributes["trio_delta.outcome"] for w in works] == ["failed", "synced"]  # type: ignore[index]
    for work in works:
        assert work.parent is not None
        assert work.parent.span_id == inform.context.span_id  # type: ignore[union-attr]
        assert work.context.trace_id == request.context.trace_id  # type: ignore[union-attr]
    assert works[0].status.status_code is StatusCode.ERROR
    assert works[1].status.status_code is StatusCode.UNSET

    # The context went with the resource; the application's own metadata stayed.
    assert row is not None
    assert row.metadata["mine"] == "kept"
    assert row.metadata["traceparent"].split("-")[1] == format(request.context.trace_id, "032x")  # type: ignore[union-attr]
    # An inform outside any request starts a trace of its own.
    other = [
        s
        for s in spans
        if s.name == "trio_delta.work user" and s.attributes["trio_delta.object_id"] == "other@x"  # type: ignore[index]
    ]
    assert len(other) == 1
    assert other[0].context.trace_id != request.context.trace_id  # type: ignore[union-attr]
    # Work with no stored context starts a trace of its own: not a child of
    # the span current where the client was opened.
    (startup,) = [s for s in spans if s.name == "startup"]
    (plain,) = [
        s
        for s in spans
        if s.name == "trio_delta.work user" and s.attributes["trio_delta.object_id"] == "plain@x"  # type: ignore[index]
    ]
    assert plain.parent is None
    assert not [
        s for s in spans if s.parent is not None and s.parent.span_id == startup.context.span_id
    ]  # type: ignore[union-attr]


async def test_metrics_and_traces_together(pg_dsn: str, config: delta.Config) -> None:
    from prometheus_client import CollectorRegistry

    from trio_delta.metrics import PrometheusMetrics

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    registry = CollectorRegistry()
    both = delta.Observers(PrometheusMetrics(registry), OpenTelemetryTracing(provider))
    controller = RecordingController()
    cfg = dataclasses.replace(config, observer=both)
    async with delta.open_delta_client(pg_dsn, controllers_for(controller), config=cfg) as client:
        await client.inform_many([User(f"m{i}@x", "n", 1) for i in range(3)])
        with trio.fail_after(10):
            while len(controller.worked) < 3:
                await trio.sleep(0.02)
    labels = {"kind": "user", "namespace": "default", "outcome": "synced"}
    with trio.fail_after(5):
        while registry.get_sample_value("trio_delta_works_total", labels) != 3:
            await trio.sleep(0.02)
    spans = exporter.get_finished_spans()
    (inform,) = [s for s in spans if s.name == "trio_delta.inform user"]
    works = [s for s in spans if s.name == "trio_delta.work user"]
    assert len(works) == 3
    assert all(w.parent is not None and w.parent.span_id == inform.context.span_id for w in works)  # type: ignore[union-attr]


class _SpanNoting(RecordingController):
    """Notes the span context current in each work, and starts a child
    span there, as an HTTP client instrumented by OpenTelemetry would."""

    def __init__(self, provider: TracerProvider) -> None:
        super().__init__()
        self.contexts: dict[str, trace.SpanContext] = {}
        self._tracer = provider.get_tracer("work")

    async def work(self, resource: delta.Resource[User]) -> None:
        self.contexts[resource.object.email] = trace.get_current_span().get_span_context()
        with self._tracer.start_as_current_span("outgoing call"):
            await super().work(resource)


async def test_the_work_of_an_unsampled_request_makes_no_span_but_keeps_its_trace(
    pg_dsn: str, config: delta.Config
) -> None:
    exporter = InMemorySpanExporter()
    # Only traces with an even id are sampled: the request's decides for
    # its inform and the work.
    sampler = _EvenTraceIds()
    provider = TracerProvider(sampler=sampler)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    cfg = dataclasses.replace(config, observer=OpenTelemetryTracing(provider))
    controller = _SpanNoting(provider)
    app = provider.get_tracer("app")
    async with delta.open_delta_client(pg_dsn, controllers_for(controller), config=cfg) as client:
        requests: dict[str, trace.SpanContext] = {}
        while len(requests) < 2:  # one request of each kind
            with app.start_as_current_span("request") as request:
                context = request.get_span_context()
                email = "sampled@x" if context.trace_flags.sampled else "unsampled@x"
                if email not in requests:
                    requests[email] = context
                    await client.inform(User(email, "n", 1))
        with trio.fail_after(10):
            while len(controller.worked) < 2:
                await trio.sleep(0.02)
    spans = exporter.get_finished_spans()
    works = {
        s.attributes["trio_delta.object_id"]: s for s in spans if s.name == "trio_delta.work user"
    }  # type: ignore[index]
    assert set(works) == {"sampled@x"}
    assert works["sampled@x"].context.trace_id == requests["sampled@x"].trace_id  # type: ignore[union-attr]
    # The unsampled work ran inside its request's trace, flagged unsampled,
    # so its own calls were not recorded either (and would tell the next
    # service not to sample).
    inside = controller.contexts["unsampled@x"]
    assert inside.trace_id == requests["unsampled@x"].trace_id
    assert not inside.trace_flags.sampled
    # Asked once, for the sampled work: the other made no span to drop.
    assert sampler.asked.count("trio_delta.work user") == 1
    outgoing = [s for s in spans if s.name == "outgoing call"]
    assert [s.context.trace_id for s in outgoing] == [requests["sampled@x"].trace_id]  # type: ignore[union-attr]


class _EvenTraceIds(Sampler):
    def __init__(self) -> None:
        self.asked: list[str] = []

    def should_sample(
        self,
        parent_context: Context | None,
        trace_id: int,
        name: str,
        kind: trace.SpanKind | None = None,
        attributes: Attributes = None,
        links: Sequence[trace.Link] | None = None,
        trace_state: trace.TraceState | None = None,
    ) -> SamplingResult:
        self.asked.append(name)
        parent = trace.get_current_span(parent_context).get_span_context()
        # As ParentBased would: a parent decides, else the id.
        sampled = parent.trace_flags.sampled if parent.is_valid else trace_id % 2 == 0
        decision = Decision.RECORD_AND_SAMPLE if sampled else Decision.DROP
        return SamplingResult(decision, attributes)  # the span keeps what it was given

    def get_description(self) -> str:
        return "even trace ids"


@pytest.mark.parametrize("follow", [True, False])
async def test_a_worker_may_ask_its_own_sampler_about_unsampled_informs(
    pg_dsn: str, config: delta.Config, follow: bool
) -> None:
    # The informing process samples nothing; the working one records every
    # span its sampler is asked about. Following the inform's decision (the
    # default) makes no work span; not following asks the sampler, which
    # records one, in the inform's trace.
    quiet = TracerProvider(sampler=ALWAYS_OFF)
    exporter = InMemorySpanExporter()
    loud = TracerProvider(sampler=ALWAYS_ON)
    loud.add_span_processor(SimpleSpanProcessor(exporter))
    informing = dataclasses.replace(config, observer=OpenTelemetryTracing(quiet))
    working = dataclasses.replace(
        config, observer=OpenTelemetryTracing(loud, follow_inform_sampling=follow)
    )
    controller = _SpanNoting(loud)
    async with (
        delta.open_delta_client(pg_dsn, controllers_for(controller), config=working),
        delta.open_delta_client(pg_dsn, delta.Controllers(), config=informing) as informer,
    ):
        await informer.inform(User("u@x", "n", 1))
        with trio.fail_after(10):
            while not controller.worked:
                await trio.sleep(0.02)
    inform_trace = controller.contexts["u@x"].trace_id
    works = [s for s in exporter.get_finished_spans() if s.name == "trio_delta.work user"]
    if follow:
        assert works == []
        assert not controller.contexts["u@x"].trace_flags.sampled
    else:
        (work,) = works
        assert work.context.trace_id == inform_trace  # type: ignore[union-attr]
        assert controller.contexts["u@x"].trace_flags.sampled


async def test_a_dropped_root_work_span_runs_the_work_in_a_trace_of_its_own(
    pg_dsn: str, config: delta.Config, caplog: pytest.LogCaptureFixture
) -> None:
    # Informed without a trace context; the worker's sampler drops the work
    # span it makes: the work still runs, in a fresh unsampled trace, and
    # nothing is told an outcome or logged as a broken hook.
    exporter = InMemorySpanExporter()
    dropping = TracerProvider(sampler=ALWAYS_OFF)
    dropping.add_span_processor(SimpleSpanProcessor(exporter))
    working = dataclasses.replace(config, observer=OpenTelemetryTracing(dropping))
    controller = _SpanNoting(dropping)
    controller.fail = {"r@x": 1}  # a failure too: no finish to tell it
    async with (
        delta.open_delta_client(pg_dsn, controllers_for(controller), config=working),
        delta.open_delta_client(pg_dsn, delta.Controllers(), config=config) as plain,
    ):
        await plain.inform(User("r@x", "n", 1))
        with trio.fail_after(10):
            while len(controller.worked) < 2:
                await trio.sleep(0.02)
    inside = controller.contexts["r@x"]
    assert inside.is_valid
    assert not inside.trace_flags.sampled
    assert exporter.get_finished_spans() == ()
    assert not [r for r in caplog.records if "observer hook" in r.getMessage()]
