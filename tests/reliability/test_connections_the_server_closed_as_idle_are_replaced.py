"""Connections the server closes as idle are replaced without a hiccup.

With ``idle_session_timeout = 1s`` on the database (a common guard against
forgotten sessions) the client's dedicated connections were used without a
check: with ``leader_ttl=3`` every renewal found its connection closed and
failed once, so leadership flapped 11 times in 30 s, with 81 warnings. Now
a dedicated connection closed meanwhile is noticed before use and replaced,
a statement the server refused as idle is sent again on a new connection,
and the LISTEN connection, idle by design, keeps its session.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import ClassVar

import pytest
import trio
from psycopg.conninfo import make_conninfo

import trio_delta as delta
from tests.conftest import sql

RUN_FOR = 10.0
LEADER_TTL = 3.0


@dataclass
class Job:
    kind: ClassVar[str] = "job"
    key: str

    def id(self) -> str:
        return self.key


class Recorder(delta.Controller[Job]):
    def __init__(self) -> None:
        self.started: dict[str, float] = {}

    async def work(self, resource: delta.Resource[Job]) -> None:
        self.started.setdefault(resource.object.key, time.monotonic())


@pytest.fixture
def idle_dsn(pg_dsn: str) -> Iterator[str]:
    """A database of this test's own whose sessions are closed after 1 s idle."""
    name = f"td_idle_{uuid.uuid4().hex[:12]}"
    sql(pg_dsn, f"create database {name}")
    try:
        dsn = make_conninfo(pg_dsn, dbname=name)
        sql(dsn, f"alter database {name} set idle_session_timeout = '1s'")
        yield dsn
    finally:
        sql(pg_dsn, f"drop database {name} with (force)")


async def test_the_leader_holds_and_work_flows_on_a_server_closing_idle_sessions(
    idle_dsn: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="trio_delta")
    await delta.migrate(idle_dsn, schema="delta")
    assert sql(idle_dsn, "show idle_session_timeout") == [("1s",)]
    controller = Recorder()
    controllers = delta.Controllers()
    delta.add_controller(controllers, controller)
    config = delta.Config(leader_ttl=LEADER_TTL, poll_interval=30.0, shutdown_grace=1.0)
    latencies: list[float] = []
    leader_samples: list[bool] = []
    async with delta.open_delta_client(idle_dsn, controllers, config=config) as client:
        with trio.fail_after(10):
            while not client.is_leader:
                await trio.sleep(0.05)

        async def watch_leadership() -> None:
            while True:
                leader_samples.append(client.is_leader)
                await trio.sleep(0.1)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(watch_leadership)
            # Bursts further apart than the server's idle limit: every lane
            # sits idle past it between them.
            deadline = trio.current_time() + RUN_FOR
            burst = 0
            while trio.current_time() < deadline:
                await trio.sleep(2.5)
                for i in range(3):
                    key = f"b{burst}-{i}"
                    sent = time.monotonic()
                    await client.inform(Job(key))
                    with trio.fail_after(10):
                        while key not in controller.started:
                            await trio.sleep(0.01)
                    latencies.append(controller.started[key] - sent)
                burst += 1
            nursery.cancel_scope.cancel()
        assert client.is_leader
    messages = [(r.levelno, r.name, r.getMessage()) for r in caplog.records]
    assert not [m for m in messages if "lost leadership" in m[2]], messages
    warnings = [m for m in messages if m[0] >= logging.WARNING]
    assert warnings == [], warnings
    assert all(leader_samples), "leadership never lapsed"
    # Replacing connections was needed (the server really closed them) ...
    assert any("closed by the server" in m[2] for m in messages), messages
    # ... and never made anyone wait on a poll: work still starts at once.
    assert max(latencies) < 1.0, latencies
