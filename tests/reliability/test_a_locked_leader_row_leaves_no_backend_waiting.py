"""A lock on the leader row leaves no server backend waiting behind it.

With the leader row locked for 30 s (``leader_ttl=3``) the elector gave up on
each election statement by closing its connection, reconnected, and sent the
next one: the abandoned backends kept waiting on the lock, 0 -> 8 of them
(connections 6 -> 14), and each would still commit its stale election once
the lock went. Now the leader's connection bounds every lock wait (a third of
``leader_ttl``), so the server ends the wait, the connection stays, and no
backend is left behind.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from typing import ClassVar

import psycopg
import pytest
import trio

import trio_delta as delta
from tests.conftest import sql

HOLD = 10.0
LEADER_TTL = 3.0


@dataclass
class Job:
    kind: ClassVar[str] = "job"
    key: str

    def id(self) -> str:
        return self.key


class NoWork(delta.Controller[Job]):
    async def work(self, resource: delta.Resource[Job]) -> None:
        pass


def backends(dsn: str, application: str) -> tuple[int, int]:
    """The client's server backends: (all, waiting on a lock)."""
    ((total, waiting),) = sql(
        dsn,
        "select count(*), count(*) filter (where wait_event_type = 'Lock') "
        "from pg_stat_activity where application_name = %s",
        [application],
    )
    return int(total), int(waiting)


async def wait_until_leader(client: delta.Client, within: float) -> None:
    with trio.fail_after(within):
        while not client.is_leader:
            await trio.sleep(0.05)


async def test_backends_stay_put_while_the_leader_row_is_locked(
    pg_dsn: str, schema: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="trio_delta")
    application = f"td_{uuid.uuid4().hex[:12]}"
    controllers = delta.Controllers()
    delta.add_controller(controllers, NoWork())
    config = delta.Config(
        schema=schema, leader_ttl=LEADER_TTL, poll_interval=0.2, shutdown_grace=1.0
    )
    async with delta.open_delta_client(
        f"{pg_dsn} application_name={application}", controllers, config=config
    ) as client:
        await wait_until_leader(client, 10)
        await trio.sleep(1.0)
        before, _ = backends(pg_dsn, application)
        samples: list[tuple[int, int]] = []
        with psycopg.connect(pg_dsn) as holder:
            holder.execute(f"select * from {schema}.leader for update")
            deadline = trio.current_time() + HOLD
            while trio.current_time() < deadline:
                samples.append(await trio.to_thread.run_sync(backends, pg_dsn, application))
                await trio.sleep(0.25)
            assert not client.is_leader, "a leader that cannot renew stops leading"
            holder.rollback()
        with trio.fail_after(5):
            while (after := backends(pg_dsn, application))[1] != 0 or after[0] > before + 1:
                await trio.sleep(0.1)
        await wait_until_leader(client, 2 * LEADER_TTL)
    # At most the leader's own statement waits at any time (the fetcher may
    # open its second claim connection meanwhile: one more at most).
    assert max(waiting for _, waiting in samples) <= 1, samples
    assert max(total for total, _ in samples) <= before + 1, (before, samples)
    failures = [
        r.getMessage()
        for r in caplog.records
        if r.getMessage().startswith("leader election failed")
    ]
    assert failures, "the election's lock timeouts are logged"
    assert all("lock" in message for message in failures), failures
