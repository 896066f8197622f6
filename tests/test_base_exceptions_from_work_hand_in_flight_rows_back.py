"""A BaseException from one work (KeyboardInterrupt, SystemExit, the user's
own) leaves ``open_delta_client`` as itself, but only once that attempt is
recorded as failed and every other claimed row is handed back: nothing is
left ``pending`` for the rescuer. A ``trio.Cancelled`` leaked by a work's own
cancel scope fails that attempt and never stops the workers."""

from __future__ import annotations

import time

import pytest
import trio

import trio_delta as delta

from .conftest import sql
from .models import User, controllers_for, wait_for_state

S = delta.ResourceState


class CustomBase(BaseException):
    pass


def _raise(name: str) -> None:
    if name == "KeyboardInterrupt":
        raise KeyboardInterrupt
    if name == "SystemExit":
        raise SystemExit(3)
    raise CustomBase("custom")


class PoisonController(delta.Controller[User]):
    """``poison@x.io`` raises a BaseException (or leaks a Cancelled) once
    the others are running; the others take ``seconds``."""

    def __init__(self, raises: str, seconds: float = 10) -> None:
        self.raises = raises
        self.seconds = seconds
        self.running: set[str] = set()
        self.finished: list[str] = []

    async def work(self, resource: delta.Resource[User]) -> None:
        if resource.object_id != "poison@x.io":
            self.running.add(resource.object_id)
            await trio.sleep(self.seconds)
            self.finished.append(resource.object_id)
            return
        with trio.fail_after(5):
            while len(self.running) < 5:
                await trio.sleep(0.01)
        if self.raises != "Cancelled":
            _raise(self.raises)
        leaked: trio.Cancelled | None = None
        with trio.CancelScope() as own:
            own.cancel()
            try:
                await trio.sleep(1)
            except trio.Cancelled as exc:
                leaked = exc
        assert leaked is not None
        raise leaked  # outside the scope it belonged to


@pytest.mark.parametrize("raises", ["KeyboardInterrupt", "SystemExit", "CustomBase"])
async def test_base_exception_from_one_work_hands_the_other_rows_back(
    pg_dsn: str, schema: str, raises: str
) -> None:
    controller = PoisonController(raises)
    config = delta.Config(schema=schema, poll_interval=0.2, shutdown_grace=30)
    started = time.monotonic()
    with pytest.raises(BaseException) as info:  # noqa: PT012 - the body is the scenario
        async with delta.open_delta_client(pg_dsn, controllers_for(controller), config=config) as c:
            for i in range(5):
                await c.inform(User(f"ok{i}@x.io", "ok"))
            await c.inform(User("poison@x.io", "P"))
            await trio.sleep(20)
    took = time.monotonic() - started
    # Read before anything else can touch the rows.
    rows = {
        object_id: (state, attempt, errors)
        for object_id, state, attempt, errors in sql(
            pg_dsn, f"select object_id, state, attempt, errors from {schema}.resources"
        )
    }

    assert type(info.value).__name__ == raises  # as itself, not wrapped
    assert took < 5  # not after the grace (30 s) nor the innocent works (10 s)
    assert controller.finished == []
    state, attempt, errors = rows.pop("poison@x.io")
    assert (state, attempt) == ("failed", 1)
    (error,) = errors
    assert error["error"].startswith(f"{raises}: ")
    assert rows == {f"ok{i}@x.io": ("scheduled", 0, []) for i in range(5)}


async def test_stray_cancelled_from_a_work_fails_it_and_workers_go_on(
    pg_dsn: str, config: delta.Config
) -> None:
    controller = PoisonController("Cancelled", seconds=0.05)
    async with delta.open_delta_client(pg_dsn, controllers_for(controller), config=config) as c:
        for i in range(5):
            await c.inform(User(f"ok{i}@x.io", "ok"))
        await c.inform(User("poison@x.io", "P"), delta.InformOpts(max_attempts=1))
        poison = await wait_for_state(c, "user", "poison@x.io", S.DEGRADED, within=10)
        for i in range(3):
            await c.inform(User(f"later{i}@x.io", "L"))
        for i in range(3):
            await wait_for_state(c, "user", f"later{i}@x.io", S.SYNCED, within=10)
    assert "Cancelled" in poison.errors[0].error
    assert sorted(controller.finished) == sorted(
        [f"ok{i}@x.io" for i in range(5)] + [f"later{i}@x.io" for i in range(3)]
    )
