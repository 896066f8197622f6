"""An informer run's trace span carries the objects it wrote and its
outcome: ``ok``, or ``failed`` with an error status; the engine tells any
observer's ``trace_informer_run`` the same."""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any, ClassVar

import trio
import trio.testing
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

import trio_delta as delta
from trio_delta.testing import open_test_client
from trio_delta.tracing import OpenTelemetryTracing


@dataclass
class Good:
    kind: ClassVar[str] = "good"
    key: str

    def id(self) -> str:
        return self.key


@dataclass
class Bad:
    kind: ClassVar[str] = "bad"
    key: str

    def id(self) -> str:
        return self.key


async def send_all(send: trio.MemorySendChannel[Any], objects: list[Any], fail: bool) -> None:
    async with send:
        for obj in objects:
            await send.send(obj)
        if fail:
            raise RuntimeError("the source went away")


class SendsGood(delta.Controller[Good]):
    async def inform(self, opts: delta.InformOptions, send: trio.MemorySendChannel[Any]) -> None:
        await send_all(send, [Good("a"), Good("b"), Good("c")], fail=False)

    async def work(self, resource: delta.Resource[Good]) -> None:
        pass


class FailsAfterOne(delta.Controller[Bad]):
    async def inform(self, opts: delta.InformOptions, send: trio.MemorySendChannel[Any]) -> None:
        await send_all(send, [Bad("x")], fail=True)

    async def work(self, resource: delta.Resource[Bad]) -> None:
        pass


async def test_each_run_span_has_its_objects_and_outcome(
    autojump_clock: trio.testing.MockClock,
) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    controllers = delta.Controllers()
    delta.add_controller(controllers, SendsGood())
    delta.add_controller(controllers, FailsAfterOne())
    config = delta.Config(
        random=random.Random(0),
        client_id="test-client",
        observer=OpenTelemetryTracing(provider),
    )
    async with open_test_client(controllers, config=config) as t:
        with trio.fail_after(600):
            await t.run_until(lambda: t.client.stats.informer_runs == 2)
    spans = {s.name: s for s in exporter.get_finished_spans()}
    good, bad = spans["trio_delta.informer good"], spans["trio_delta.informer bad"]
    assert good.attributes is not None
    assert bad.attributes is not None
    assert (good.attributes["trio_delta.objects"], good.attributes["trio_delta.outcome"]) == (
        3,
        "ok",
    )
    assert good.status.status_code is StatusCode.UNSET
    assert (bad.attributes["trio_delta.objects"], bad.attributes["trio_delta.outcome"]) == (
        1,
        "failed",
    )
    assert bad.status.status_code is StatusCode.ERROR
    assert "the source went away" in (bad.status.description or "")


async def test_a_hook_that_yields_its_own_span_is_not_called(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """An observer whose trace hooks return OpenTelemetry's own context
    manager (which yields a span, not a finish function) works as before;
    combined with OpenTelemetryTracing, whose spans still get their outcome."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("app")

    class OwnSpans(delta.Observer):
        def trace_work(
            self, kind: str, namespace: str, object_id: str, attempt: int, metadata: Any
        ) -> Any:
            return tracer.start_as_current_span(f"app work {kind}")

        def trace_informer_run(self, kind: str) -> Any:
            return tracer.start_as_current_span(f"app informer {kind}")

    controllers = delta.Controllers()
    delta.add_controller(controllers, SendsGood())
    config = delta.Config(
        random=random.Random(0),
        client_id="test-client",
        observer=delta.Observers(OwnSpans(), OpenTelemetryTracing(provider)),
    )
    async with open_test_client(controllers, config=config) as t:
        with trio.fail_after(600):
            await t.run_until(lambda: t.client.stats.informer_runs == 1)
            await t.run_until_idle()
        assert t.client.stats.worked == 3
    names = [s.name for s in exporter.get_finished_spans()]
    assert names.count("app work good") == 3
    assert names.count("app informer good") == 1
    spans = {s.name: s for s in exporter.get_finished_spans()}
    run = spans["trio_delta.informer good"]
    work = spans["trio_delta.work good"]
    assert run.attributes is not None
    assert run.attributes["trio_delta.outcome"] == "ok"
    assert work.attributes is not None
    assert work.attributes["trio_delta.outcome"] == "synced"
