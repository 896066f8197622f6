"""`trio-delta resources retry|invalidate|delete`: effects checked in SQL,
and the NOTIFY that wakes running clients."""

from __future__ import annotations

from collections.abc import Generator
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg import sql as pgsql

from tests.conftest import sql


def _states(dsn: str, schema: str) -> dict[str, tuple[str, int]]:
    rows = sql(dsn, f'select object_id, state, attempt from "{schema}".resources')
    return {object_id: (state, attempt) for object_id, state, attempt in rows}


@contextmanager
def _listening(dsn: str, schema: str) -> Generator[list[str]]:
    """Collects the payloads NOTIFYed on the schema's channel in the block."""
    payloads: list[str] = []
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(pgsql.SQL("listen {}").format(pgsql.Identifier(f"trio_delta_{schema}")))
        yield payloads
        conn.execute("select 1")  # delivers what arrived meanwhile
        payloads.extend(n.payload for n in conn.notifies(timeout=0.5, stop_after=10))


def test_retry_schedules_failed_and_degraded_now_and_notifies(
    cli: Any, pg_dsn: str, populated: str
) -> None:
    base = ("resources", "retry", "--dsn", pg_dsn, "--schema", populated)
    before = _states(pg_dsn, populated)

    dry = cli(*base, "--all", "--dry-run", "--json")
    assert dry.code == 0, dry.err
    assert dry.json["dry_run"] is True
    assert sorted(r["object_id"] for r in dry.json["resources"]) == ["bad-1", "bad-2"]
    assert _states(pg_dsn, populated) == before

    refused = cli(*base, "--kind", "cli-item", "good-1", "bad-1")
    assert refused.code == 1  # good-1 is synced: nothing to retry
    assert refused.out.startswith("retried 1 resource: cli-item/bad-1")
    assert refused.err_lines == [
        "trio-delta: error: 1 not retried: 'good-1' (synced); "
        "retry acts on failed/degraded resources"
    ]

    with _listening(pg_dsn, populated) as payloads:
        result = cli(*base, "--state", "failed")
        assert result.code == 0, result.err
        assert result.out.strip() == "retried 1 resource: cli-item/bad-2"
    assert payloads == ["default"]

    after = _states(pg_dsn, populated)
    assert after["bad-1"] == ("scheduled", 0)
    assert after["bad-2"] == ("scheduled", 0)
    assert {k: v for k, v in after.items() if not k.startswith("bad")} == {
        k: v for k, v in before.items() if not k.startswith("bad")
    }
    (due,) = sql(
        pg_dsn,
        f'select bool_and(scheduled_at <= now()) from "{populated}".resources '
        "where object_id like 'bad-%%'",
    )
    assert due == (True,)

    nothing = cli(*base, "--all")
    assert (nothing.code, nothing.out.strip()) == (0, "retried 0 resources")


def test_invalidate_expires_synced_resources_and_notifies(
    cli: Any, pg_dsn: str, populated: str
) -> None:
    base = ("resources", "invalidate", "--dsn", pg_dsn, "--schema", populated)
    # A synced row may carry the errors of attempts that failed before it synced.
    sql(
        pg_dsn,
        f"update \"{populated}\".resources set errors = %s::jsonb where object_id = 'good-1'",
        ['[{"at": "2030-01-01T00:00:00+00:00", "attempt": 1, "error": "boom", "trace": ""}]'],
    )
    with _listening(pg_dsn, populated) as payloads:
        result = cli(*base, "--tag", "blue", "--json")
        assert result.code == 0, result.err
    assert result.json["count"] == 2
    assert payloads == ["default"]
    states = _states(pg_dsn, populated)
    assert states["good-1"][0] == states["good-2"][0] == "expired"
    assert states["good-3"][0] == states["good-4"][0] == "synced"
    # A new round of work, as Client.invalidate and the expirer start one.
    assert states["good-1"][1] == states["good-2"][1] == 0
    assert states["good-3"][1] == 1
    errors = sql(
        pg_dsn,
        f'select object_id, errors from "{populated}".resources '
        "where object_id in ('good-1', 'good-2') order by object_id",
    )
    assert errors == [("good-1", []), ("good-2", [])]

    with _listening(pg_dsn, populated) as payloads:
        other = cli(*base, "--namespace", "other")
        assert other.code == 0, other.err
    assert payloads == ["other"]
    assert _states(pg_dsn, populated)["good-4"][0] == "expired"

    failed = cli(*base, "--kind", "cli-item", "bad-1")
    assert failed.code == 1
    assert "'bad-1' (degraded)" in failed.err


def test_delete_is_soft_unless_hard(cli: Any, pg_dsn: str, populated: str) -> None:
    base = ("resources", "delete", "--dsn", pg_dsn, "--schema", populated)
    soft = cli(*base, "--kind", "cli-item", "good-3", "bad-2")
    assert soft.code == 0, soft.err
    states = _states(pg_dsn, populated)
    assert states["good-3"][0] == states["bad-2"][0] == "deleted"
    assert len(states) == 6

    again = cli(*base, "--kind", "cli-item", "good-3")
    assert again.code == 1
    assert "'good-3' (deleted)" in again.err

    hard = cli(*base, "--hard", "--state", "deleted")
    assert hard.code == 0, hard.err
    assert hard.out.startswith("deleted 2 resources")
    assert set(_states(pg_dsn, populated)) == {"good-1", "good-2", "bad-1", "good-4"}

    limited = cli(*base, "--hard", "--all", "--limit", "1")
    assert limited.code == 0
    assert set(_states(pg_dsn, populated)) == {"good-2", "bad-1", "good-4"}

    missing = cli(*base, "--kind", "cli-item", "no-such-id")
    assert missing.code == 1
    assert "'no-such-id' (not found)" in missing.err
