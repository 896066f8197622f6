"""Server time of the dashboard's pages on a large table (issue 20).

Fills a scratch schema with ``--rows`` resources (default 1,000,000: two
kinds, three namespaces, 99 % synced, 0.5 % degraded, 0.5 % scheduled)
with one INSERT ... SELECT, analyzes it, opens the dashboard in-process and
requests each page ``--repeat`` times through its ASGI interface (no
network). Reports, per page, the median and p95 of the whole request
(handler, queries, rendering) and of the database time the page reports in
its ``Server-Timing`` header.

    python benchmarks/dashboard_pages.py [--rows 1000000] [--repeat 30]
"""

from __future__ import annotations

import argparse
import functools
import re
import statistics
import time
from typing import Any

import httpx
import psycopg
import trio

import trio_delta as delta
from trio_delta.ui import open_dashboard

DSN = "host=127.0.0.1 user=postgres dbname=test"
SCHEMA = "bench_dashboard"
TIMING = re.compile(r"db;dur=([0-9.]+)")


def fill(dsn: str, rows: int) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(
            """
            insert into SCHEMA_NAME.resources
                (kind, object_id, namespace, state, attempt, max_attempts, object, hash,
                 tags, errors, created_at, updated_at, scheduled_at, attempted_at,
                 attempted_by, synced_at)
            select case when i %% 3 = 0 then 'invoice' else 'payout' end,
                   'obj-' || lpad(i::text, 8, '0'),
                   (array['default', 'eu', 'us'])[1 + i %% 3],
                   case when i %% 200 = 7 then 'degraded'
                        when i %% 200 = 11 then 'scheduled' else 'synced' end,
                   1, 10, json_build_object('n', i), '\\x00'::bytea,
                   case when i %% 10 = 0 then array['vip'] else '{}'::text[] end,
                   case when i %% 200 = 7
                        then '[{"at": "2026-01-01T00:00:00+00:00", "attempt": 1,
                               "error": "boom", "trace": null}]'::jsonb
                        else '[]'::jsonb end,
                   now() - interval '1 hour', now() - (i %% 3600) * interval '1 second',
                   now() - interval '1 hour', now() - interval '1 hour', 'bench',
                   case when i %% 200 in (7, 11) then null
                        else now() - (i %% 3600) * interval '1 second' end
            from generate_series(1, %s) as i
            """.replace("SCHEMA_NAME", SCHEMA),
            (rows,),
        )
        conn.execute(f"analyze {SCHEMA}.resources")


async def measure(dsn: str, rows: int, repeat: int) -> list[tuple[str, list[float], list[float]]]:
    out: list[tuple[str, list[float], list[float]]] = []
    async with open_dashboard(dsn, schema=SCHEMA) as app:
        transport = httpx.ASGITransport(app=app)  # pyright: ignore[reportArgumentType]
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as http:
            first = await http.get("/resources")
            after = re.findall(r"after=(\d+)", first.text)
            deep = rows * 9 // 10
            payout = f"obj-{rows // 2 // 3 * 3 + 1:08}"  # i % 3 != 0: a payout
            pages: list[tuple[str, str]] = [
                ("list, first page", "/resources"),
                ("list, next page", f"/resources?after={after[-1]}"),
                ("list, a page deep in the table", f"/resources?after={deep}"),
                ("list, kind=payout", "/resources?kind=payout"),
                (
                    "list, kind + namespace + next page",
                    f"/resources?kind=payout&namespace=eu&after={deep}",
                ),
                ("list, state=degraded (0.5 %)", "/resources?state=degraded"),
                ("list, state=degraded, next page", f"/resources?state=degraded&after={rows // 2}"),
                ("list, tag=vip", "/resources?tag=vip"),
                ("list, id contains '0999'", "/resources?q=0999"),
                ("list, id contains a rare text", "/resources?q=obj-0099999"),
                ("resource page", f"/resource?kind=payout&id={payout}"),
                ("overview (counts shared for a refresh interval)", "/"),
            ]
            for name, path in pages:
                totals: list[float] = []
                database: list[float] = []
                for _ in range(repeat):
                    start = time.perf_counter()
                    response = await http.get(path)
                    totals.append((time.perf_counter() - start) * 1000)
                    assert response.status_code == 200, (path, response.status_code)
                    match = TIMING.search(response.headers.get("server-timing", ""))
                    database.append(float(match.group(1)) if match else float("nan"))
                out.append((name, totals, database))
    # The overview's own cost: a dashboard whose counts are never reused.
    async with open_dashboard(dsn, schema=SCHEMA, refresh_seconds=1e-9) as app:
        transport = httpx.ASGITransport(app=app)  # pyright: ignore[reportArgumentType]
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as http:
            totals, database = [], []
            for _ in range(repeat):
                start = time.perf_counter()
                response = await http.get("/")
                totals.append((time.perf_counter() - start) * 1000)
                match = TIMING.search(response.headers.get("server-timing", ""))
                database.append(float(match.group(1)) if match else float("nan"))
            out.append(("overview, counted afresh", totals, database))
    return out


def p95(values: list[float]) -> float:
    return statistics.quantiles(values, n=20)[-1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    parser.add_argument("--dsn", default=DSN)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=30)
    parser.add_argument("--keep", action="store_true", help="keep the filled schema")
    args = parser.parse_args()
    with psycopg.connect(args.dsn, autocommit=True) as conn:
        conn.execute(f"drop schema if exists {SCHEMA} cascade")
    trio.run(functools.partial(delta.migrate, args.dsn, schema=SCHEMA))
    started = time.perf_counter()
    fill(args.dsn, args.rows)
    took = time.perf_counter() - started
    print(f"{args.rows:,} rows in {took:.1f} s; {args.repeat} requests a page")
    results: Any = trio.run(measure, args.dsn, args.rows, args.repeat)
    print(f"{'page':45} {'request p50':>12} {'p95':>8} {'db p50':>8} {'p95':>8}  (ms)")
    for name, totals, database in results:
        print(
            f"{name:45} {statistics.median(totals):12.2f} {p95(totals):8.2f}"
            f" {statistics.median(database):8.2f} {p95(database):8.2f}"
        )
    if not args.keep:
        with psycopg.connect(args.dsn, autocommit=True) as conn:
            conn.execute(f"drop schema {SCHEMA} cascade")


if __name__ == "__main__":
    main()
