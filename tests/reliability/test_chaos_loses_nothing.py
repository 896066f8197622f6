"""The short chaos run (tests/reliability/chaos.py --short) as part of the suite.

Three worker processes on a Postgres of the test's own; 2,000 resources,
some failing transiently and some always; for 30 s a process is SIGKILLed
every few seconds (the busiest one, or the leader) and started again, and
Postgres is restarted once. Afterwards every resource is synced (or degraded,
for those made to fail always), none is lost or left pending, no attempt was
worked twice, and the work re-executed is at most what was in flight at the
kills. It runs three times: workers connected directly, polling only (no
LISTEN), and through PgBouncer in transaction mode (polling only, with no
prepared statements and no session settings). The full run (10,000
resources, 60 s) is ``nox -s chaos``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.reliability import chaos


@pytest.mark.chaos
@pytest.mark.parametrize("connection", ["direct", "poll-only", "transaction-pooler"])
def test_chaos_loses_nothing(tmp_path: Path, connection: str) -> None:
    settings = chaos.Settings.short(connection=connection)
    report = chaos.run(settings, tmp_path / "chaos", progress=print)
    print(report.text())
    assert report.ok, report.text()
    figures = report.figures
    assert figures["synced"] + figures["degraded (permanent)"] == figures["resources"]
    assert figures["kills (SIGKILL)"] >= 5
    assert figures["postgres restarts"] == 1
    assert figures["duplicates"] <= figures["in flight at kills (total)"]
    assert figures["same attempt worked twice"] == 0
