"""``ObjectSettings(global_parallelism=2)`` holds across three client
processes: the works, which log when they start and end, never overlap more
than two at a time, and all 300 resources sync. One process SIGKILLed
mid-run leaves its works' rows pending; its places come back when the
rescuer hands those rows on (``work_timeout + rescue_after`` after their
claim), and the other two finish everything."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import trio

from .conftest import sql
from .helpers import wait_until
from .procs.harness import RunnerProcess, describe, started

N = 300
CAP = 2
WORK = 0.05


def open_works(proc: RunnerProcess) -> set[tuple[str, int]]:
    """Works ``proc`` has started and not ended."""
    events = proc.work_events()
    return {(o, a) for o, a, e, _ in events if e == "start"} - {
        (o, a) for o, a, e, _ in events if e != "start"
    }


def peak_overlap(events: list[tuple[str, int, str, float]]) -> int:
    """Most works running at once, from their start and end times (the
    works of a killed process end with it: a "killed" event)."""
    edges: list[tuple[float, int]] = []
    open_: dict[tuple[str, int], float] = {}
    for object_id, attempt, event, at in events:
        if event == "start":
            open_[(object_id, attempt)] = at
            edges.append((at, 1))
        elif (object_id, attempt) in open_:
            del open_[(object_id, attempt)]
            edges.append((at, -1))
    running = peak = 0
    for _, step in sorted(edges, key=lambda e: (e[0], e[1])):  # ends before starts at a tie
        running += step
        peak = max(peak, running)
    return peak


async def test_global_parallelism_holds_across_processes_and_survives_a_kill(
    pg_dsn: str, schema: str, tmp_path: Path
) -> None:
    common = {
        "work_seconds": WORK,
        "global_parallelism": CAP,
        "work_timeout": 1.0,
        "rescue_after": 0.5,
        "leader_ttl": 1.0,
        "maintenance_interval": 0.2,
    }
    procs = [
        RunnerProcess("p0", tmp_path, pg_dsn, schema, inform=N, **common),  # type: ignore[arg-type]
        RunnerProcess("p1", tmp_path, pg_dsn, schema, **common),  # type: ignore[arg-type]
        RunnerProcess("p2", tmp_path, pg_dsn, schema, **common),  # type: ignore[arg-type]
    ]
    with started(*procs):
        await wait_until(lambda: all(p.running for p in procs), within=20)
        # Every resource informed first (p0 informs them: killing it earlier
        # would leave some never informed).
        await wait_until(
            lambda: sql(pg_dsn, f"select count(*) from {schema}.resources")[0][0] == N, within=30
        )
        # Killed while its works hold places under the cap.
        await wait_until(lambda: sum(len(p.work_started()) for p in procs) >= 20, within=30)
        await wait_until(lambda: any(open_works(p) for p in procs), within=10)
        victim = next(p for p in procs if open_works(p))
        victim.send(signal.SIGKILL)
        killed_at = time.time()
        victim.wait(10)
        cut = open_works(victim)

        def synced() -> int:
            rows = sql(pg_dsn, f"select count(*) from {schema}.resources where state = 'synced'")
            return int(rows[0][0])

        try:
            await wait_until(lambda: synced() == N, within=60)
        except trio.TooSlowError:
            states = sql(pg_dsn, f"select state, count(*) from {schema}.resources group by 1")
            raise AssertionError(f"not all synced: {states}\n{describe(*procs)}") from None
    killed = [(o, a, "killed", killed_at) for o, a in cut]
    events = sorted([*(e for p in procs for e in p.work_events()), *killed], key=lambda e: e[3])
    assert cut  # the kill cut works short: their places had to come back
    retried = {o for o, a, event, _ in events if a > 1 and event == "end"}
    assert {o for o, _ in cut} <= retried, describe(*procs)
    assert peak_overlap(events) == CAP, describe(*procs)
    assert {o for o, _, event, _ in events if event == "end"} == {f"job-{i}" for i in range(N)}
