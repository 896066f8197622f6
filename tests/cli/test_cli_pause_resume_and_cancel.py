"""`trio-delta pause` / `resume` record and remove pauses that clients
obey and `status` shows; `trio-delta resources cancel` deletes resources
(and would stop their running work: see test_pause_and_cancel_reach_other_processes)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import psycopg

from trio_delta import producer

from ..conftest import sql


@dataclass
class Ticket:
    kind: ClassVar[str] = "ticket"
    key: str

    def id(self) -> str:
        return self.key


def test_pause_resume_and_status(cli: Any, pg_dsn: str, migrated: str) -> None:
    base = ("--dsn", pg_dsn, "--schema", migrated)
    assert cli("pause", *base).code == 2  # neither --kind nor --namespace
    first = cli("pause", *base, "--kind", "ticket")
    assert (first.code, first.out.strip()) == (0, "paused kind ticket"), first.err
    again = cli("pause", *base, "--kind", "ticket")
    assert again.out.strip() == "paused kind ticket (it was already)"
    assert cli("pause", *base, "--namespace", "blue", "--kind", "ticket").code == 0
    rows = sql(pg_dsn, f"select kind, namespace, paused_by from {migrated}.pauses order by 2")
    assert [(k, n) for k, n, _ in rows] == [("ticket", ""), ("ticket", "blue")]
    assert all(by.startswith("trio-delta@") for _, _, by in rows)

    status = cli("status", *base, "--json")
    assert [(p["kind"], p["namespace"]) for p in status.json["paused"]] == [
        ("ticket", None),
        ("ticket", "blue"),
    ]
    assert "paused: kind ticket since" in cli("status", *base).out

    assert cli("resume", *base, "--kind", "ticket").out.strip() == "resumed kind ticket"
    missing = cli("resume", *base, "--kind", "ticket")
    assert missing.code == 1
    assert "kind ticket is not paused" in missing.err
    assert sql(pg_dsn, f"select kind, namespace from {migrated}.pauses") == [("ticket", "blue")]


def test_resources_cancel_deletes_the_named_resources(cli: Any, pg_dsn: str, migrated: str) -> None:
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        producer.inform_many(conn, [Ticket("a"), Ticket("b"), Ticket("c")], schema=migrated)
    base = ("--dsn", pg_dsn, "--schema", migrated)
    dry = cli("resources", "cancel", *base, "--dry-run", "ticket", "a")
    assert dry.out.strip() == "would cancel 1 resource: ticket/a"
    done = cli("resources", "cancel", *base, "ticket", "a", "b")
    assert done.out.strip() == "cancelled 2 resources: ticket/a, ticket/b", done.err
    states = sql(pg_dsn, f"select object_id, state from {migrated}.resources order by 1")
    assert states == [("a", "deleted"), ("b", "deleted"), ("c", "scheduled")]
    twice = cli("resources", "cancel", *base, "ticket", "a")
    assert twice.code == 1
    assert "'a' (deleted)" in twice.err
