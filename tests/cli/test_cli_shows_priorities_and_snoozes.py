"""`resources list` / `show` show priority and snoozes, `status` counts the
resources waiting for a later due time and the snoozed among them."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

import psycopg

import trio_delta as delta
from trio_delta import producer

from ..conftest import sql


@dataclass
class Ticket:
    kind: ClassVar[str] = "ticket"
    key: str

    def id(self) -> str:
        return self.key


def test_priority_run_at_and_snoozes_are_shown(cli: Any, pg_dsn: str, migrated: str) -> None:
    later = datetime.now(UTC) + timedelta(hours=1)
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        producer.inform(conn, Ticket("plain"), schema=migrated)
        producer.inform(conn, Ticket("urgent"), delta.InformOpts(priority=9), schema=migrated)
        producer.inform(conn, Ticket("later"), delta.InformOpts(run_at=later), schema=migrated)
        producer.inform(conn, Ticket("dozy"), schema=migrated)
    # As a work that snoozed twice leaves it: due in ten minutes.
    sql(
        pg_dsn,
        f"update {migrated}.resources set snoozes = 2,"
        " scheduled_at = now() + interval '10 minutes' where object_id = 'dozy'",
    )
    base = ("--dsn", pg_dsn, "--schema", migrated)

    listed = cli("resources", "list", *base, "--json")
    assert listed.code == 0, listed.err
    by_id = {r["object_id"]: r for r in listed.json}
    assert {k: (r["priority"], r["snoozes"]) for k, r in by_id.items()} == {
        "plain": (0, 0),
        "urgent": (9, 0),
        "later": (0, 0),
        "dozy": (0, 2),
    }
    assert datetime.fromisoformat(by_id["later"]["scheduled_at"]) == later

    table = cli("resources", "list", *base)
    assert table.code == 0, table.err
    header = next(line for line in table.out.splitlines() if "object id" in line)
    assert {"priority", "snoozes", "due"} <= set(header.split())

    shown = cli("resources", "show", *base, "ticket", "dozy")
    assert shown.code == 0, shown.err
    fields = dict(line.split() for line in shown.out.splitlines() if len(line.split()) == 2)
    assert (fields["priority"], fields["snoozes"]) == ("0", "2")

    status = cli("status", *base, "--json")
    assert status.code == 0, status.err
    (group,) = status.json["resources"]
    assert (group["states"]["scheduled"], group["waiting"], group["snoozed"]) == (4, 2, 1)
    assert (status.json["totals"]["waiting"], status.json["totals"]["snoozed"]) == (2, 1)
    status_table = cli("status", *base)
    assert {"waiting", "snoozed"} <= set(status_table.out.split())
