"""A trace hook that raises (as it is made, as its span opens or closes, or
in its finish) is logged and skipped; what the traced work raises goes on
unchanged, even when the hook's ``__exit__`` would swallow or replace it."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from typing import Any

import pytest

import trio_delta as delta
from trio_delta._observer import SafeObserver

Finish = Callable[[str, BaseException | None], None]


class Manager:
    def __init__(self, *, enter: bool = False, exit_: bool = False, swallow: bool = False) -> None:
        self.enter, self.exit, self.swallow = enter, exit_, swallow
        self.exited_with: object = "not exited"
        self.finished: list[str] = []

    def __enter__(self) -> Finish:
        if self.enter:
            raise RuntimeError("enter")

        def finish(outcome: str, error: BaseException | None) -> None:
            self.finished.append(outcome)
            if outcome == "raise":
                raise RuntimeError("finish")

        return finish

    def __exit__(self, exc_type: object, exc: object, tb: object) -> bool:
        self.exited_with = exc_type
        if self.exit:
            raise RuntimeError("exit")
        return self.swallow


class Tracer(delta.Observer):
    def __init__(self, manager: Manager | None) -> None:
        self.manager = manager

    def trace_work(  # pyright: ignore[reportIncompatibleMethodOverride]
        self, kind: str, namespace: str, object_id: str, attempt: int, metadata: Mapping[str, Any]
    ) -> AbstractContextManager[Finish]:
        if self.manager is None:
            raise RuntimeError("make")
        return self.manager


def traced(manager: Manager | None) -> AbstractContextManager[Any]:
    return SafeObserver(Tracer(manager)).trace_work("k", "n", "o", 1, {})


def test_a_hook_that_fails_to_open_is_skipped(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, "trio_delta.observer")
    with traced(None) as finish:
        assert finish is None
    with traced(Manager(enter=True)) as finish:
        assert finish is None
    assert [r.getMessage() for r in caplog.records] == [
        "observer hook trace_work raised: RuntimeError('make')",
        "observer hook trace_work raised: RuntimeError('enter')",
    ]


def test_finish_and_exit_failures_are_logged_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, "trio_delta.observer")
    manager = Manager(exit_=True)
    with traced(manager) as finish:
        finish("raise", None)
        finish("synced", None)
    assert manager.finished == ["raise", "synced"]
    assert manager.exited_with is None  # and its RuntimeError did not get out
    # The first is logged; the next within the throttle's window are counted.
    assert caplog.records[0].getMessage() == (
        "observer hook trace_work raised: RuntimeError('finish')"
    )


@pytest.mark.parametrize("manager", [Manager(swallow=True), Manager(exit_=True)])
def test_what_the_work_raises_goes_on_unchanged(manager: Manager) -> None:
    failure = KeyboardInterrupt()  # a BaseException, as Cancelled is
    with pytest.raises(KeyboardInterrupt) as caught, traced(manager):
        raise failure
    assert caught.value is failure
    assert manager.exited_with is KeyboardInterrupt


class Hears(delta.Observer):
    """Records the hooks and finishes it hears; raises from each if told to."""

    def __init__(self, *, fail: bool = False) -> None:
        self.fail = fail
        self.heard: list[str] = []

    def work_ended(self, kind: str, namespace: str, outcome: str, seconds: float) -> None:
        self.heard.append(f"ended {outcome}")
        if self.fail:
            raise RuntimeError("ended")

    def trace_work(
        self, kind: str, namespace: str, object_id: str, attempt: int, metadata: Mapping[str, Any]
    ) -> AbstractContextManager[Any]:
        observer = self

        class Span:
            def __enter__(self) -> Finish:
                def finish(outcome: str, error: BaseException | None) -> None:
                    observer.heard.append(f"finish {outcome}")
                    if observer.fail:
                        raise RuntimeError("finish")

                return finish

            def __exit__(self, *exc_info: object) -> None:
                pass

        return Span()


def test_an_observer_that_raises_never_keeps_the_others_from_hearing(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, "trio_delta.observer")
    first, second = Hears(fail=True), Hears()
    safe = SafeObserver(delta.Observers(first, second))
    safe.work_ended("k", "n", "synced", 0.1)
    with safe.trace_work("k", "n", "o", 1, {}) as finish:
        finish("synced", None)
    assert first.heard == second.heard == ["ended synced", "finish synced"]
    # Logged by the client's guard (the next within the throttle's window
    # are counted, not logged).
    assert caplog.records[0].getMessage() == (
        "observer hook work_ended raised: RuntimeError('ended')"
    )
