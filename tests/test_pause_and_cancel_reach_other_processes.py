"""Pause, resume and cancel from one process take effect in client
processes of their own, through the database's notifications: a pause stops
their claims within 100 ms, a resume restarts them within 100 ms, and a
cancel reaches a running work within 100 ms (p99 over 50 cancels), its row
left deleted."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import trio

import trio_delta as delta

from .conftest import sql
from .helpers import wait_until
from .procs.harness import RunnerProcess, describe, started

BOUND = 0.1  # seconds


@dataclass
class Job:  # the runners' Job, as this process sees it
    kind: ClassVar[str] = "job"
    key: str

    def id(self) -> str:
        return self.key


class Elsewhere(delta.Controller[Job]):
    """This process works nothing: it serves a namespace no job is in."""

    async def work(self, resource: delta.Resource[Job]) -> None:
        raise AssertionError("the test process must not work jobs")


def open_operator(dsn: str, schema: str) -> delta.Client:
    controllers = delta.Controllers()
    delta.add_controller(controllers, Elsewhere())
    return delta.open_delta_client(  # type: ignore[return-value]
        dsn,
        controllers,
        namespaces={"elsewhere": delta.NamespaceConfig()},
        config=delta.Config(schema=schema, inform_interval=-1, poll_interval=5.0),
    )


async def test_pause_and_resume_reach_two_other_processes(
    pg_dsn: str, schema: str, tmp_path: Path
) -> None:
    runners = [
        RunnerProcess(f"r{i}", tmp_path, pg_dsn, schema, work_seconds=0.01) for i in range(2)
    ]
    with started(*runners):
        await wait_until(lambda: all(r.running for r in runners), within=20)
        async with open_operator(pg_dsn, schema) as op:  # type: ignore[attr-defined]
            for i in range(20):
                await op.inform(Job(f"before-{i}"))
            await wait_until(lambda: started_count(runners) == 20, within=10)

            await op.pause(kind="job")
            paused_at = time.time()
            # Informs keep coming for a second; none may start after the bound.
            end = trio.current_time() + 1.0
            n = 0
            while trio.current_time() < end:
                await op.inform(Job(f"paused-{n}"))
                n += 1
                await trio.sleep(0.01)
            late = [t for _, t in starts(runners) if t > paused_at + BOUND]
            assert late == [], describe(*runners)
            assert started_count(runners) < 20 + n

            await op.resume(kind="job")
            resumed_at = time.time()
            await wait_until(lambda: started_count(runners) == 20 + n, within=10)
    first = min(t for _, t in starts(runners) if t > paused_at + BOUND)
    print(f"first start after resume: {(first - resumed_at) * 1000:.1f} ms")
    assert first - resumed_at <= BOUND, (first - resumed_at, describe(*runners))


def starts(runners: list[RunnerProcess]) -> list[tuple[str, float]]:
    return [(o, t) for r in runners for o, _, event, t in r.work_events() if event == "start"]


def started_count(runners: list[RunnerProcess]) -> int:
    return len({o for o, _ in starts(runners)})


async def test_cancel_reaches_work_in_another_process_within_100ms(
    pg_dsn: str, schema: str, tmp_path: Path
) -> None:
    worker = RunnerProcess("worker", tmp_path, pg_dsn, schema, block=True)
    n = 50
    latencies: list[float] = []
    with started(worker):
        await wait_until(lambda: worker.running, within=20)
        async with open_operator(pg_dsn, schema) as op:  # type: ignore[attr-defined]
            await op.inform_many([Job(f"job-{i}") for i in range(n)])
            await wait_until(lambda: len(worker.work_started()) == n, within=20)
            for i in range(n):
                key = f"job-{i}"
                asked = time.time()
                row = await op.cancel("job", key)
                assert row is not None
                assert row.state is delta.ResourceState.DELETED
                await wait_until(lambda key=key: cancelled_at(worker, key) is not None, within=5)
                at = cancelled_at(worker, key)
                assert at is not None
                latencies.append(at - asked)
            await trio.sleep(0.5)  # whatever the worker would write, it has by now
    latencies.sort()
    p99 = latencies[int(len(latencies) * 0.99) - 1]
    print(f"cancel latency p50 {latencies[n // 2] * 1000:.1f} ms, p99 {p99 * 1000:.1f} ms")
    assert p99 <= BOUND, latencies
    states = sql(pg_dsn, f"select distinct state from {schema}.resources")
    assert states == [("deleted",)], describe(worker)


def cancelled_at(worker: RunnerProcess, key: str) -> float | None:
    return next(
        (t for o, _, event, t in worker.work_events() if o == key and event == "cancelled"), None
    )
