"""``ObjectSettings(rate_limit=RateLimit(per_second=50, burst=10))`` holds
across three client processes: over ten seconds of a backlog, no one-second
window has more than 50 + 10 attempts started (each attempt's start as the
database records it, ``attempted_at``, by the clients' clocks anchored to
the database's), and the average rate is within 10 % of 50. Waiting spends
no attempt. (By the wall clock of the processes' own work logs, a work
begins a few milliseconds after its claim, so a window can show one more
at its edge.)"""

from __future__ import annotations

from pathlib import Path

import trio

from .conftest import sql
from .helpers import wait_until
from .procs.harness import RunnerProcess, describe, started

RATE, BURST, SECONDS = 50, 10, 10.0
N = 800  # more than ten seconds' worth


async def test_rate_limit_holds_across_three_processes(
    pg_dsn: str, schema: str, tmp_path: Path
) -> None:
    common = {"rate": RATE, "burst": BURST}
    procs = [
        RunnerProcess("p0", tmp_path, pg_dsn, schema, inform=N, **common),  # type: ignore[arg-type]
        RunnerProcess("p1", tmp_path, pg_dsn, schema, **common),  # type: ignore[arg-type]
        RunnerProcess("p2", tmp_path, pg_dsn, schema, **common),  # type: ignore[arg-type]
    ]
    with started(*procs):
        await wait_until(lambda: all(p.running for p in procs), within=20)
        await wait_until(lambda: sum(len(p.work_started()) for p in procs) > 0, within=20)
        await trio.sleep(SECONDS + 0.5)
        logged = {p.name for p in procs if p.work_started()}
    rows = sql(
        pg_dsn,
        f"select extract(epoch from attempted_at)::float8 from {schema}.resources"
        " where attempted_at is not null order by 1",
    )
    starts = [float(t) for (t,) in rows]
    first = starts[0]
    window = [t for t in starts if t < first + SECONDS]
    busiest = max(sum(1 for u in window if t <= u < t + 1.0) for t in window)
    average = (len(window) - BURST) / SECONDS  # the opening burst is not the rate
    print(f"starts in {SECONDS:g} s: {len(window)}; busiest second {busiest}; rate {average:.1f}/s")
    assert busiest <= RATE + BURST, describe(*procs)
    assert abs(average - RATE) <= 0.1 * RATE, describe(*procs)
    assert sql(pg_dsn, f"select max(attempt) from {schema}.resources")[0][0] <= 1
    assert len(logged) >= 2  # shared, not one process's
