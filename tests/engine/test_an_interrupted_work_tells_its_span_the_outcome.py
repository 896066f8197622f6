"""A work's trace span is told its outcome also when the work does not
return: a timeout fails (then degrades) the attempt, a row cancelled while
its work runs is ``cancelled``, and a forced stop hands the row back; each
named as the outcome writer and the metrics name it."""

from __future__ import annotations

import contextlib
import random
from collections.abc import Generator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, ClassVar

import pytest
import trio
import trio.testing

import trio_delta as delta
from trio_delta.testing import open_test_client


@dataclass
class Slow:
    kind: ClassVar[str] = "slow"
    key: str

    def id(self) -> str:
        return self.key


class SlowController(delta.Controller[Slow]):
    def __init__(self) -> None:
        self.started = trio.Event()

    async def work(self, resource: delta.Resource[Slow]) -> None:
        self.started.set()
        await trio.sleep(3600)


class SpanOutcomes(delta.Observer):
    """Records what each work's span was told, and what the metrics saw."""

    def __init__(self) -> None:
        self.spans: list[tuple[int, str, str | None]] = []
        self.ended: list[str] = []

    @contextmanager
    def trace_work(
        self, kind: str, namespace: str, object_id: str, attempt: int, metadata: Mapping[str, Any]
    ) -> Generator[Any, None, None]:
        def finish(outcome: str, error: BaseException | None) -> None:
            self.spans.append((attempt, outcome, None if error is None else type(error).__name__))

        yield finish

    def work_ended(self, kind: str, namespace: str, outcome: str, seconds: float) -> None:
        self.ended.append(outcome)


def config(observer: SpanOutcomes, **extra: Any) -> delta.Config:
    return delta.Config(
        random=random.Random(0), client_id="test-client", observer=observer, **extra
    )


def controllers_of(controller: SlowController) -> delta.Controllers:
    controllers = delta.Controllers()
    delta.add_controller(controllers, controller)
    return controllers


class Boom(BaseException):
    """Not an Exception: ends the client, as KeyboardInterrupt would."""


class RaisesAsItIsCancelled(SlowController):
    async def work(self, resource: delta.Resource[Slow]) -> None:
        try:
            await super().work(resource)
        except trio.Cancelled:
            raise Boom("raised while being cancelled") from None


async def test_a_timed_out_work_is_failed_then_degraded_in_its_spans(
    autojump_clock: trio.testing.MockClock,
) -> None:
    observer = SpanOutcomes()
    controllers = controllers_of(SlowController())
    async with open_test_client(controllers, config=config(observer, work_timeout=1)) as t:
        await t.client.inform(Slow("a"), delta.InformOpts(max_attempts=2))
        with trio.fail_after(600):
            await t.run_until(lambda: len(observer.ended) == 2)
    assert observer.spans == [(1, "failed", "WorkTimeout"), (2, "degraded", "WorkTimeout")]
    assert observer.ended == ["failed", "degraded"]


@pytest.mark.parametrize(
    ("controller", "raised"),
    [(SlowController, None), (RaisesAsItIsCancelled, "Boom")],
)
async def test_a_work_whose_row_is_cancelled_ends_its_span_cancelled(
    autojump_clock: trio.testing.MockClock, controller: type[SlowController], raised: str | None
) -> None:
    # Whatever the work raised as it was cancelled: a BaseException (Boom)
    # stops the client, which re-raises it.
    observer = SpanOutcomes()
    slow = controller()
    with trio.fail_after(600), contextlib.suppress(Boom):
        async with open_test_client(controllers_of(slow), config=config(observer)) as t:
            await t.client.inform(Slow("a"))
            await slow.started.wait()
            await t.client.cancel("slow", "a")
            await t.run_until(lambda: len(observer.ended) == 1)
    assert observer.spans == [(1, "cancelled", raised)]
    assert observer.ended == ["cancelled"]


async def test_a_forced_stop_ends_the_span_handed_back(
    autojump_clock: trio.testing.MockClock,
) -> None:
    observer = SpanOutcomes()
    controller = SlowController()
    config_ = config(observer, shutdown_grace=1)
    with trio.fail_after(600):
        async with open_test_client(controllers_of(controller), config=config_) as t:
            await t.client.inform(Slow("a"))
            await controller.started.wait()
    assert observer.spans == [(1, "handed_back", None)]
    assert observer.ended == ["handed_back"]
