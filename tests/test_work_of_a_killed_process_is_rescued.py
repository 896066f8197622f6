"""A process killed with SIGKILL in the middle of ``work`` leaves its claimed
resources ``pending``; once ``work_timeout + rescue_after`` has passed since
the claim, the leader's rescuer fails them with "rescued after worker loss"
and another client works them to ``synced``. None is lost, none is rescued
early."""

from __future__ import annotations

import signal
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import ClassVar

import trio

import trio_delta as delta

from .conftest import sql
from .helpers import wait_until
from .procs.harness import RunnerProcess, describe, started

WORK_TIMEOUT = 1.5
RESCUE_AFTER = 0.5
TTL = 1.0
MAINTENANCE = 0.2
N = 3


@dataclass
class Job:  # the runner's Job, as this process sees it
    kind: ClassVar[str] = "job"
    key: str

    def id(self) -> str:
        return self.key


class Recorder(delta.Controller[Job]):
    def __init__(self) -> None:
        self.worked: list[tuple[str, int]] = []

    async def work(self, resource: delta.Resource[Job]) -> None:
        self.worked.append((resource.object.key, resource.attempt))


async def test_resources_of_a_process_killed_mid_work_are_rescued_and_synced(
    pg_dsn: str, schema: str, tmp_path: Path
) -> None:
    victim = RunnerProcess(
        "victim",
        tmp_path,
        pg_dsn,
        schema,
        block=True,
        inform=N,
        leader_ttl=TTL,
        maintenance_interval=MAINTENANCE,
        work_timeout=WORK_TIMEOUT,
        rescue_after=RESCUE_AFTER,
    )
    with started(victim):
        await wait_until(lambda: len(victim.work_started()) == N, within=20)
        victim.send(signal.SIGKILL)
        killed_at = trio.current_time()
        assert victim.wait(5) == -signal.SIGKILL
        victim_id = victim.id
    assert sorted(victim.work_started()) == [(f"job-{i}", 1) for i in range(N)]

    claimed = sql(
        pg_dsn,
        f"select object_id, state, attempt, attempted_by, attempted_at "
        f"from {schema}.resources order by object_id",
    )
    assert [(r[0], r[1], r[2], r[3]) for r in claimed] == [
        (f"job-{i}", "pending", 1, victim_id) for i in range(N)
    ]
    claimed_at = {r[0]: r[4] for r in claimed}

    controller = Recorder()
    controllers = delta.Controllers()
    delta.add_controller(controllers, controller)
    config = delta.Config(
        schema=schema,
        leader_ttl=TTL,
        maintenance_interval=MAINTENANCE,
        work_timeout=WORK_TIMEOUT,
        rescue_after=RESCUE_AFTER,
        poll_interval=0.2,
        retry_policy=lambda attempt: 0.05,
    )
    async with delta.open_delta_client(pg_dsn, controllers, config=config) as client:

        def all_synced() -> bool:
            rows = sql(pg_dsn, f"select count(*) from {schema}.resources where state = 'synced'")
            return rows[0][0] == N

        # the victim's lease and the rescue delay both have to run out
        await wait_until(all_synced, within=WORK_TIMEOUT + RESCUE_AFTER + TTL + 5)
        took = trio.current_time() - killed_at
        rows = await client.list_resources(kind="job")
        stats = client.stats

    assert took < WORK_TIMEOUT + RESCUE_AFTER + TTL + 2, f"rescue took {took:.2f}s"
    assert sorted(controller.worked) == [(f"job-{i}", 2) for i in range(N)]
    assert len(rows) == N
    for row in rows:
        assert row.state is delta.ResourceState.SYNCED
        assert row.attempt == 2
        assert row.attempted_by == client.id
        assert [(e.attempt, e.error) for e in row.errors] == [(1, "rescued after worker loss")]
        # not rescued before work_timeout + rescue_after had passed since the claim
        waited = row.errors[0].at - claimed_at[row.object_id]
        assert waited >= timedelta(seconds=WORK_TIMEOUT + RESCUE_AFTER), waited
    assert stats.maintenance.rescued == N, describe(victim)
