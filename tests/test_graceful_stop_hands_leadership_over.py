"""A leader that stops gracefully (SIGTERM makes the process leave the
client's ``async with`` block) resigns with a NOTIFY: a follower in another
process takes over within 1 s. The TTL is long (renewals every 3 s), so only
the resignation can make the handover that fast."""

from __future__ import annotations

import signal
from pathlib import Path

import trio

from .conftest import sql
from .helpers import wait_until
from .procs.harness import RunnerProcess, describe, started

TTL = 9.0
HANDOVER = 1.0


def leader_id(dsn: str, schema: str) -> str | None:
    rows = sql(dsn, f"select leader_id from {schema}.leader")
    return rows[0][0] if rows else None


async def test_graceful_stop_hands_leadership_over_within_1s(
    pg_dsn: str, schema: str, tmp_path: Path
) -> None:
    procs = [RunnerProcess(name, tmp_path, pg_dsn, schema, leader_ttl=TTL) for name in "abc"]
    with started(*procs):
        await wait_until(lambda: all(p.running for p in procs), within=20)
        by_id = {p.id: p for p in procs}
        await wait_until(lambda: leader_id(pg_dsn, schema) is not None, within=2)
        await wait_until(lambda: sum(p.reports_leader for p in procs) == 1, within=2)

        remaining = list(procs)
        for _ in range(2):  # a -> b -> c, whichever order they win in
            old = by_id[leader_id(pg_dsn, schema)]  # type: ignore[index]
            assert [p for p in remaining if p.reports_leader] == [old], describe(*remaining)
            remaining.remove(old)
            old.send(signal.SIGTERM)
            stopped_at = trio.current_time()

            def handed_over(old_id: str = old.id) -> bool:
                current = leader_id(pg_dsn, schema)
                return current is not None and current != old_id

            await wait_until(handed_over, within=HANDOVER + 5)
            took = trio.current_time() - stopped_at
            assert took <= HANDOVER, f"handover took {took:.2f}s\n" + describe(*procs)
            new = by_id[leader_id(pg_dsn, schema)]  # type: ignore[index]
            assert new in remaining

            assert old.wait(10) == 0, describe(old)
            final = old.state()
            assert final is not None
            assert final["phase"] == "stopped"
            assert final["is_leader"] is False
            await wait_until(lambda new=new: new.reports_leader, within=1)
            assert [p for p in remaining if p.reports_leader] == [new]


async def test_graceful_stop_with_work_in_flight_hands_leadership_over_within_1s(
    pg_dsn: str, schema: str, tmp_path: Path
) -> None:
    """The stopping leader's own work may take up to ``shutdown_grace`` to
    finish; the followers need not wait for it to lead."""
    grace = 2.0
    busy = RunnerProcess(
        "busy", tmp_path, pg_dsn, schema, block=True, inform=1, leader_ttl=TTL, shutdown_grace=grace
    )
    followers = [RunnerProcess(name, tmp_path, pg_dsn, schema, leader_ttl=TTL) for name in "bc"]
    with started(busy):
        await wait_until(
            lambda: busy.reports_leader and busy.work_started() == [("job-0", 1)], within=20
        )
        with started(*followers):
            await wait_until(lambda: all(p.running for p in followers), within=20)
            assert leader_id(pg_dsn, schema) == busy.id
            busy.send(signal.SIGTERM)
            stopped_at = trio.current_time()

            def handed_over() -> bool:
                return leader_id(pg_dsn, schema) in {p.id for p in followers}

            await wait_until(handed_over, within=grace + 5)
            took = trio.current_time() - stopped_at
            # the work blocked forever: it was cancelled after the grace and
            # handed back, so a follower works it (attempt restored)
            assert busy.wait(grace + 10) == 0, describe(busy)
            await wait_until(
                lambda: any(p.work_started() == [("job-0", 1)] for p in followers), within=5
            )
            assert took <= HANDOVER, f"handover took {took:.2f}s (grace {grace}s)"
