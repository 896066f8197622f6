"""Three client processes on one database: exactly one of them is leader, and
when the leader is killed with SIGKILL (no chance to resign) another takes
over once the dead leader's lease has run out: within ``leader_ttl`` plus one
renewal interval (``leader_ttl / 3``)."""

from __future__ import annotations

import signal
from datetime import datetime
from pathlib import Path

import trio

from .conftest import sql
from .helpers import wait_until
from .procs.harness import RunnerProcess, describe, started

TTL = 1.0
RENEW = TTL / 3
#: For polling the leader table (20 ms) and the processes' reports (20 ms).
SLACK = 0.4


def leader_rows(dsn: str, schema: str) -> list[tuple[str, datetime, datetime]]:
    return sql(dsn, f"select leader_id, elected_at, expires_at from {schema}.leader")  # type: ignore[return-value]


async def test_exactly_one_leader_then_another_after_sigkill(
    pg_dsn: str, schema: str, tmp_path: Path
) -> None:
    procs = [RunnerProcess(name, tmp_path, pg_dsn, schema, leader_ttl=TTL) for name in "abc"]
    with started(*procs):
        await wait_until(lambda: all(p.running for p in procs), within=20)
        by_id = {p.id: p for p in procs}
        assert len(by_id) == 3, describe(*procs)
        await wait_until(lambda: any(p.reports_leader for p in procs), within=2 * TTL)

        # Exactly one leader, the same one, over several renewals.
        seen_leaders: set[str] = set()
        expiries: list[datetime] = []
        end = trio.current_time() + 2 * TTL
        while trio.current_time() < end:
            rows = leader_rows(pg_dsn, schema)
            assert len(rows) == 1, rows
            leader_id, _, expires_at = rows[0]
            seen_leaders.add(leader_id)
            expiries.append(expires_at)
            reporting = [p.name for p in procs if p.reports_leader]
            assert reporting == [by_id[leader_id].name], describe(*procs)
            await trio.sleep(0.05)
        assert len(seen_leaders) == 1
        assert expiries[-1] > expiries[0], "the leader never renewed its lease"

        (old_id,) = seen_leaders
        old = by_id[old_id]
        old.send(signal.SIGKILL)
        killed_at = trio.current_time()
        assert old.wait(5) == -signal.SIGKILL
        # nobody resigned: the dead leader's row stays until its lease runs out
        ((still_id, _, old_expires),) = leader_rows(pg_dsn, schema)
        assert still_id == old_id

        def new_leader() -> bool:
            rows = leader_rows(pg_dsn, schema)
            return bool(rows) and rows[0][0] != old_id

        await wait_until(new_leader, within=TTL + RENEW + 5)
        took = trio.current_time() - killed_at
        ((new_id, elected_at, _),) = leader_rows(pg_dsn, schema)
        assert new_id in by_id
        assert new_id != old_id
        assert took <= TTL + RENEW + SLACK, f"takeover took {took:.2f}s"
        # and not before the dead leader's lease was over
        assert elected_at > old_expires

        survivors = [p for p in procs if p is not old]
        await wait_until(lambda: by_id[new_id].reports_leader, within=1)
        # still exactly one leader among the survivors
        end = trio.current_time() + TTL
        while trio.current_time() < end:
            assert [p.name for p in survivors if p.reports_leader] == [by_id[new_id].name], (
                describe(*survivors)
            )
            assert [r[0] for r in leader_rows(pg_dsn, schema)] == [new_id]
            await trio.sleep(0.05)
