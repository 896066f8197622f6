"""Work running longer than ``Config.work_timeout`` is cancelled and failed."""

from __future__ import annotations

from datetime import timedelta

import trio

import trio_delta as delta

from .models import User, controllers_for, wait_for_state

S = delta.ResourceState


class SlowController(delta.Controller[User]):
    def __init__(self) -> None:
        self.calls = 0
        self.cancelled = 0
        self.finished = 0

    async def work(self, resource: delta.Resource[User]) -> None:
        self.calls += 1
        try:
            await trio.sleep(5)
        except trio.Cancelled:
            self.cancelled += 1
            raise
        self.finished += 1


async def test_work_past_its_timeout_is_cancelled_and_failed(pg_dsn: str, schema: str) -> None:
    config = delta.Config(
        schema=schema, poll_interval=0.2, work_timeout=0.2, retry_policy=lambda attempt: 30.0
    )
    controller = SlowController()
    async with delta.open_delta_client(pg_dsn, controllers_for(controller), config=config) as c:
        await c.inform(User("slow@x.io", "Slow"))
        row = await wait_for_state(c, "user", "slow@x.io", S.FAILED, within=4)
    assert controller.calls == 1
    assert controller.cancelled == 1
    assert controller.finished == 0
    assert row.attempt == 1
    assert len(row.errors) == 1
    error = row.errors[0]
    assert error.attempt == 1
    assert "timed out" in error.error or "timeout" in error.error.lower()
    assert row.attempted_at is not None
    ran_for = error.at - row.attempted_at
    assert timedelta(seconds=0.2) <= ran_for < timedelta(seconds=2)
    # a timeout is a failure like any other: retried per the retry policy
    assert abs((row.scheduled_at - error.at) - timedelta(seconds=30)) < timedelta(milliseconds=20)
