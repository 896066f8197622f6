"""``Config(listen=False)``: a client without a LISTEN connection (for a
pooler that cannot carry one) still picks up work informed elsewhere,
obeys a pause and has its running work cancelled, each within about
``poll_interval``."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import ClassVar

import trio

import trio_delta as delta

from .helpers import wait_until

POLL = 0.2


@dataclass
class Job:
    kind: ClassVar[str] = "job"
    key: str

    def id(self) -> str:
        return self.key


class Jobs(delta.Controller[Job]):
    def __init__(self) -> None:
        self.started: dict[str, float] = {}
        self.cancelled: dict[str, float] = {}

    async def work(self, resource: delta.Resource[Job]) -> None:
        self.started[resource.object_id] = time.monotonic()
        try:
            if resource.object_id.startswith("long"):
                await trio.sleep_forever()
        except trio.Cancelled:
            self.cancelled[resource.object_id] = time.monotonic()
            raise


class Nothing(delta.Controller[Job]):
    async def work(self, resource: delta.Resource[Job]) -> None:
        raise AssertionError("the operator works nothing")


async def test_poll_only_client(pg_dsn: str, schema: str) -> None:
    jobs = Jobs()
    worker_controllers = delta.Controllers()
    delta.add_controller(worker_controllers, jobs)
    operator_controllers = delta.Controllers()
    delta.add_controller(operator_controllers, Nothing())
    poll_only = delta.Config(schema=schema, listen=False, poll_interval=POLL, inform_interval=-1)
    async with (
        delta.open_delta_client(pg_dsn, worker_controllers, config=poll_only) as worker,
        delta.open_delta_client(
            pg_dsn,
            operator_controllers,
            namespaces={"elsewhere": delta.NamespaceConfig()},
            config=delta.Config(schema=schema, inform_interval=-1),
        ) as operator,
    ):
        assert not worker.stats.claimed
        assert "listener" not in worker._engine._handles  # type: ignore[attr-defined]  # no LISTEN
        asked = time.monotonic()
        await operator.inform(Job("first"))
        await wait_until(lambda: "first" in jobs.started, within=5)
        assert jobs.started["first"] - asked <= POLL + 0.3

        await operator.pause(kind="job")
        await trio.sleep(POLL + 0.3)  # the worker's next poll reads the pause
        await operator.inform(Job("while-paused"))
        await trio.sleep(3 * POLL)
        assert "while-paused" not in jobs.started
        await operator.resume(kind="job")
        await wait_until(lambda: "while-paused" in jobs.started, within=5)

        await operator.inform(Job("long"))
        await wait_until(lambda: "long" in jobs.started, within=5)
        asked = time.monotonic()
        await operator.cancel("job", "long")
        await wait_until(lambda: "long" in jobs.cancelled, within=5)
        assert jobs.cancelled["long"] - asked <= POLL + 0.3
