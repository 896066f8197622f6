"""Leaving ``open_delta_client``'s block stops the client: in-flight work may
finish within ``shutdown_grace``; past it, work is cancelled and handed back
(``scheduled``, attempt restored) so another client picks it up at once."""

from __future__ import annotations

import time

import trio

import trio_delta as delta

from .conftest import sql
from .models import RecordingController, User, controllers_for, wait_for_state

S = delta.ResourceState


class StallingController(delta.Controller[User]):
    """Work that takes ``seconds`` (forever when None)."""

    def __init__(self, seconds: float | None) -> None:
        self.seconds = seconds
        self.started = trio.Event()
        self.calls: list[str] = []
        self.finished: list[str] = []
        self.cancelled: list[str] = []

    async def work(self, resource: delta.Resource[User]) -> None:
        self.calls.append(resource.object_id)
        self.started.set()
        try:
            if self.seconds is None:
                await trio.sleep_forever()
            await trio.sleep(self.seconds)
        except trio.Cancelled:
            self.cancelled.append(resource.object_id)
            raise
        self.finished.append(resource.object_id)


def _config(schema: str, grace: float) -> delta.Config:
    return delta.Config(schema=schema, poll_interval=0.2, shutdown_grace=grace)


async def test_graceful_stop_lets_in_flight_work_finish(pg_dsn: str, schema: str) -> None:
    controller = StallingController(0.4)
    async with delta.open_delta_client(
        pg_dsn,
        controllers_for(controller),
        namespaces={"default": delta.NamespaceConfig(max_workers=1)},
        config=_config(schema, grace=3.0),
    ) as c:
        await c.inform(User("inflight@x.io", "A"))
        with trio.fail_after(5):
            await controller.started.wait()
        await c.inform(User("queued@x.io", "B"))  # waits for the only worker
        stopping = time.monotonic()
    stop_took = time.monotonic() - stopping

    assert controller.calls == ["inflight@x.io"]
    assert controller.finished == ["inflight@x.io"]
    assert controller.cancelled == []
    assert stop_took < 3.0  # it did not wait out the grace once work was done
    rows = {
        object_id: (state, attempt)
        for object_id, state, attempt in sql(
            pg_dsn, f"select object_id, state, attempt from {schema}.resources"
        )
    }
    assert rows["inflight@x.io"] == ("synced", 1)
    # nothing new is claimed while stopping
    assert rows["queued@x.io"] == ("scheduled", 0)


async def test_forced_stop_hands_work_back_for_another_client(pg_dsn: str, schema: str) -> None:
    stuck = StallingController(None)
    async with delta.open_delta_client(
        pg_dsn, controllers_for(stuck), config=_config(schema, grace=0.3)
    ) as first:
        await first.inform(User("stuck@x.io", "S"))
        with trio.fail_after(5):
            await stuck.started.wait()
        row = await first.get_resource("user", "stuck@x.io")
        assert row is not None
        assert row.state is S.PENDING
        assert row.attempt == 1
        stopping = time.monotonic()
    stop_took = time.monotonic() - stopping

    assert stuck.cancelled == ["stuck@x.io"]
    assert 0.3 <= stop_took < 3.0
    ((state, attempt, errors),) = sql(
        pg_dsn, f"select state, attempt, errors from {schema}.resources"
    )
    assert state == "scheduled"
    assert attempt == 0  # restored to its value before the claim
    assert errors == []  # a hand-back is not a failed attempt

    # another client takes it at once (not after the rescuer's delay)
    controller = RecordingController()
    async with delta.open_delta_client(
        pg_dsn, controllers_for(controller), config=_config(schema, grace=0.3)
    ) as second:
        row = await wait_for_state(second, "user", "stuck@x.io", S.SYNCED, within=2)
        assert row.attempted_by == second.id
        assert second.id != first.id
    assert row.attempt == 1
    assert controller.worked == [("stuck@x.io", 1)]
