"""Exceptions in user work fail that resource only; the client keeps running.
An exception raised in the body of ``open_delta_client`` propagates as
itself, never wrapped in an ExceptionGroup."""

from __future__ import annotations

import time

import pytest
import trio

import trio_delta as delta

from .conftest import sql
from .models import RecordingController, User, controllers_for, wait_for_state

S = delta.ResourceState


class Oops(Exception):
    pass


class UnprintableError(Exception):
    def __str__(self) -> str:
        raise RuntimeError("no str for you")


def _raise_group() -> None:
    raise ExceptionGroup("several", [ValueError("one"), KeyError("two")])


RAISERS = {
    "runtime@x.io": lambda: (_ for _ in ()).throw(RuntimeError("plain")),
    "group@x.io": _raise_group,
    "nul@x.io": lambda: (_ for _ in ()).throw(ValueError("nul \x00 and lone \ud800 here")),
    "deep@x.io": lambda: (_ for _ in ()).throw(RecursionError("deep")),
    "notimpl@x.io": lambda: (_ for _ in ()).throw(NotImplementedError()),
}


class RaisingController(delta.Controller[User]):
    def __init__(self) -> None:
        self.worked: list[str] = []

    async def work(self, resource: delta.Resource[User]) -> None:
        self.worked.append(resource.object_id)
        raiser = RAISERS.get(resource.object_id)
        if raiser is not None:
            raiser()
        if resource.object_id == "unprintable@x.io":
            raise UnprintableError


async def test_exceptions_in_work_fail_the_resource_not_the_client(
    pg_dsn: str, config: delta.Config
) -> None:
    controller = RaisingController()
    once = delta.InformOpts(max_attempts=1)
    async with delta.open_delta_client(pg_dsn, controllers_for(controller), config=config) as c:
        for email in RAISERS:
            await c.inform(User(email, "X"), once)
        rows = {e: await wait_for_state(c, "user", e, S.DEGRADED, within=5) for e in RAISERS}
        # after all that, the client still works resources
        await c.inform(User("fine@x.io", "Fine"))
        await wait_for_state(c, "user", "fine@x.io", S.SYNCED, within=5)
    assert "RuntimeError: plain" in rows["runtime@x.io"].errors[0].error
    assert "ExceptionGroup" in rows["group@x.io"].errors[0].error
    assert "RecursionError" in rows["deep@x.io"].errors[0].error
    assert "NotImplementedError" in rows["notimpl@x.io"].errors[0].error
    nul_error = rows["nul@x.io"].errors[0]
    assert "ValueError" in nul_error.error
    assert "nul" in nul_error.error
    assert "\x00" not in nul_error.error
    assert "Traceback" in nul_error.trace


async def test_exception_with_failing_str_fails_only_its_resource(
    pg_dsn: str, config: delta.Config
) -> None:
    controller = RaisingController()
    async with delta.open_delta_client(pg_dsn, controllers_for(controller), config=config) as c:
        await c.inform(User("unprintable@x.io", "X"), delta.InformOpts(max_attempts=1))
        row = await wait_for_state(c, "user", "unprintable@x.io", S.DEGRADED, within=5)
        assert "UnprintableError" in row.errors[0].error
        await c.inform(User("fine@x.io", "Fine"))
        await wait_for_state(c, "user", "fine@x.io", S.SYNCED, within=5)


def leaves(exc: BaseException) -> list[BaseException]:
    """The non-group exceptions inside ``exc`` (``[exc]`` when it is no group)."""
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for sub in exc.exceptions for leaf in leaves(sub)]
    return [exc]


async def test_exception_in_body_propagates_as_itself(pg_dsn: str, config: delta.Config) -> None:
    controller = RecordingController()
    with pytest.raises(Oops) as info:
        async with delta.open_delta_client(pg_dsn, controllers_for(controller), config=config):
            raise Oops("from the body")
    assert type(info.value) is Oops
    assert str(info.value) == "from the body"


async def _raise_in_body_with_work_in_flight(pg_dsn: str, schema: str) -> BaseException:
    controller = RecordingController()
    controller.block = trio.Event()  # never set: the work blocks until cancelled
    config = delta.Config(schema=schema, poll_interval=0.2, shutdown_grace=0.2)
    try:
        async with delta.open_delta_client(pg_dsn, controllers_for(controller), config=config) as c:
            await c.inform(User("busy@x.io", "B"))
            with trio.fail_after(5):
                await controller.started.wait()
            raise KeyError("mid-work")
    except BaseException as exc:  # what exactly escapes is the next test's business
        return exc
    raise AssertionError("the body's exception was swallowed")


async def test_exception_in_body_with_work_in_flight_hands_the_work_back(
    pg_dsn: str, schema: str
) -> None:
    exc = await _raise_in_body_with_work_in_flight(pg_dsn, schema)
    assert [type(e) for e in leaves(exc)] == [KeyError]
    assert sql(pg_dsn, f"select state, attempt from {schema}.resources") == [("scheduled", 0)]


async def test_exception_in_body_with_work_in_flight_propagates_as_itself(
    pg_dsn: str, schema: str
) -> None:
    exc = await _raise_in_body_with_work_in_flight(pg_dsn, schema)
    assert type(exc) is KeyError
    assert exc.args == ("mid-work",)


async def test_cancelling_the_client_from_outside_stops_it_cleanly(
    pg_dsn: str, schema: str, config: delta.Config
) -> None:
    controller = RecordingController()
    started = time.monotonic()
    with trio.move_on_after(0.5) as scope:
        async with delta.open_delta_client(pg_dsn, controllers_for(controller), config=config) as c:
            await c.inform(User("x@x.io", "X"))
            await trio.sleep_forever()
    assert scope.cancelled_caught
    assert time.monotonic() - started < 3
    assert controller.worked == [("x@x.io", 1)]
    assert sql(pg_dsn, f"select state from {schema}.resources") == [("synced",)]
