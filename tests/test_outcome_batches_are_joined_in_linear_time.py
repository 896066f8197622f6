"""The outcome statement joins n outcomes to their n rows in a hash join.

On a table autovacuum has not analysed yet (every new deployment, every
drain right after a big inform), the planner once estimated the claimed
rows at one and joined them to the outcome batch in a nested loop that
rescanned the batch for every row: n x n, 34 ms for 400 outcomes instead
of 7. The outcome lane's session settings rule that plan out; this test
reads the plan the lane gets, on a fresh table and on an analysed one.
"""

from __future__ import annotations

from datetime import UTC, datetime

import psycopg
import pytest
from psycopg import sql

from trio_delta._objects import prepare_object
from trio_delta._store.postgres import lane_settings, settings_params
from trio_delta._store.queries import Queries

from .models import User


def explain_complete(
    dsn: str, schema: str, rows_in_table: int, count: int, *, analyse: bool
) -> str:
    queries = Queries(schema)
    now = datetime.now(UTC)
    with psycopg.connect(dsn, autocommit=True) as conn:
        items = [
            prepare_object(User(f"u{i}", f"n{i}"), None, default_max_attempts=3)
            for i in range(rows_in_table)
        ]
        conn.execute(
            sql.SQL(
                "insert into {}.resources (kind, object_id, namespace, state, "
                "max_attempts, object, hash, created_at, updated_at, scheduled_at) "
                "select 'user', o, 'default', 'scheduled', 3, '{{}}', h, %s, %s, %s "
                "from unnest(%s::text[], %s::bytea[]) as t(o, h)"
            ).format(sql.Identifier(schema)),
            [now, now, now, [i.object_id for i in items], [i.hash for i in items]],
        )
        if analyse:
            conn.execute(sql.SQL("analyze {}.resources").format(sql.Identifier(schema)))
        conn.execute(
            queries["apply_settings"], settings_params(lane_settings("claim"), local=False)
        )
        rows = conn.execute(
            queries["claim"],
            {
                "namespace": "default",
                "kinds": ["user"],
                "limit": count,
                "now": now,
                "client_id": "me",
            },
        ).fetchall()
        assert len(rows) == count
        conn.execute(
            queries["apply_settings"], settings_params(lane_settings("complete"), local=False)
        )
        params = {
            "id": [r[0] for r in rows],
            "attempt": [r[5] for r in rows],
            "hash": [bytes(r[8]) for r in rows],
            "outcome": ["synced"] * count,
            "error": [None] * count,
            "retry_at": [None] * count,
            "outcome_all": None,
            "error_all": None,
            "retry_at_all": None,
            "now": now,
            "client_id": "me",
            "max_errors": 10,
            "channel": "unused",
        }
        plan = conn.execute(
            sql.SQL("explain (analyze, costs off, timing off) ") + queries["complete"], params
        ).fetchall()
        return "\n".join(line for (line,) in plan)


@pytest.mark.parametrize("analyse", [False, True], ids=["fresh-table", "analysed"])
async def test_the_outcome_join_never_rescans_the_batch(
    pg_dsn: str,
    schema: str,
    analyse: bool,
) -> None:
    plan = explain_complete(pg_dsn, schema, 20_000, 400, analyse=analyse)
    assert "Hash Join" in plan, plan
    # The quadratic shape: a join filter discarding (n - 1) rows per row.
    assert "Rows Removed by Join Filter" not in plan, plan
    assert "JIT" not in plan, plan
    # Rows, to lock or to update, are found by primary key, never by a scan.
    assert "Seq Scan" not in plan, plan
    update = next(line for line in plan.splitlines() if "Update on resources" in line)
    assert "rows=400" in update, plan
