"""pgqueuer's side of the benchmarks: one scenario in this (fresh) process.

Run by ``run.py``; by hand::

    python benchmarks/bench_pgqueuer.py drain --dsn DSN --schema bench_x --count 20000

pgqueuer's objects are installed into ``--schema`` (``PGQUEUER_SCHEMA``), which
the caller drops afterwards. Configured as pgqueuer's docs recommend for
throughput (docs/guides/performance-tuning.md, tools/benchmark.py):
the asyncpg driver on one dedicated connection for the worker, uvloop (what
``pgq run`` uses), the tuned autovacuum settings (``pgq autovac``), and a
``batch_size`` raised for short jobs. Settings (``--settings '{...}'``):

* ``batch_size``: jobs per dequeue round trip (``QueueManager.run(batch_size=)``);
* ``max_concurrent_tasks``: the worker's cap on running jobs (None: unlimited);
* ``enqueue_chunk``: jobs per ``Queries.enqueue`` call in the inform scenario.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from datetime import timedelta
from typing import Any

from _common import (
    asyncpg_kwargs,
    call_metrics,
    child_parser,
    emit,
    latency_metrics,
    payload,
    quiet_logging,
    settings_from,
)

DEFAULTS: dict[str, Any] = {
    "batch_size": 500,
    "max_concurrent_tasks": None,
    "enqueue_chunk": 10_000,
    # "off" for the equal-durability drain: commits as trio_delta's claims
    # and outcomes make them (see Config.async_commit).
    "synchronous_commit": "on",
    "work_seconds": 0.0,  # drain: each job awaits this long (drain_io: 0.02)
}
ENTRYPOINT = "noop"


def _encode(i: int) -> bytes:
    return json.dumps(payload(i)).encode()


async def main() -> None:
    args = child_parser(__doc__ or "").parse_args()
    settings = settings_from(args, DEFAULTS)
    # pgqueuer reads its settings (schema included) from the environment when
    # they are first used, so set it before importing.
    os.environ["PGQUEUER_SCHEMA"] = args.schema
    quiet_logging()
    import asyncpg
    from pgqueuer import PgQueuer, Queries
    from pgqueuer.db import AsyncpgDriver, AsyncpgPoolDriver
    from pgqueuer.models import Job
    from pgqueuer.types import QueueExecutionMode

    async def connect() -> Any:
        connect_: Any = getattr(asyncpg, "connect")  # asyncpg is untyped  # noqa: B009
        kwargs = asyncpg_kwargs(args.dsn)
        if settings["synchronous_commit"] != "on":
            kwargs["server_settings"] = {"synchronous_commit": settings["synchronous_commit"]}
        return await connect_(**kwargs)

    setup = Queries(AsyncpgDriver(await connect()))
    await setup.install()
    await setup.optimize_autovacuum()

    if args.scenario == "inform":
        count, chunk = args.count, settings["enqueue_chunk"]
        started = time.perf_counter()
        for lo in range(0, count, chunk):
            n = min(chunk, count - lo)
            await setup.enqueue([ENTRYPOINT] * n, [_encode(i) for i in range(lo, lo + n)], [0] * n)
        elapsed = time.perf_counter() - started
        queued = sum(s.count for s in await setup.queue_size())
        if queued != count:
            raise RuntimeError(f"expected {count} queued, found {queued}")
        emit(inform=count / elapsed, seconds=elapsed)
        return

    if args.scenario == "inform_concurrent":
        # ``--samples`` tasks, each enqueueing one job at a time, through a
        # pool (one asyncpg connection runs one statement at a time) of 20:
        # the server's max_connections (100) leaves no room for one each.
        create_pool: Any = getattr(asyncpg, "create_pool")  # noqa: B009
        kwargs = asyncpg_kwargs(args.dsn)
        size = min(args.samples, 20)
        async with create_pool(**kwargs, min_size=size, max_size=size) as pool:
            queries = Queries(AsyncpgPoolDriver(pool))
            keys = iter(range(args.count))

            async def task() -> None:
                for i in keys:
                    await queries.enqueue(ENTRYPOINT, _encode(i), 0)

            started = time.perf_counter()
            await asyncio.gather(*(task() for _ in range(args.samples)))
            elapsed = time.perf_counter() - started
        queued = sum(s.count for s in await setup.queue_size())
        if queued != args.count:
            raise RuntimeError(f"expected {args.count} queued, found {queued}")
        emit(inform_concurrent=args.count / elapsed, seconds=elapsed)
        return

    if args.scenario == "drain":
        count = args.count
        await setup.enqueue([ENTRYPOINT] * count, [_encode(i) for i in range(count)], [0] * count)
        done = 0
        first_at: float | None = None
        # Timed from opening the worker's connection, as trio_delta's drain is
        # timed from opening its client (pool included).
        started = time.perf_counter()
        pgq = PgQueuer(AsyncpgDriver(await connect()))
        opened = time.perf_counter()

        @pgq.entrypoint(ENTRYPOINT)
        async def noop(job: Job) -> None:
            nonlocal done, first_at
            if first_at is None:
                first_at = time.perf_counter()
            if settings["work_seconds"]:
                await asyncio.sleep(settings["work_seconds"])
            done += 1

        await pgq.run(
            batch_size=settings["batch_size"],
            max_concurrent_tasks=settings["max_concurrent_tasks"],
            mode=QueueExecutionMode.drain,
        )
        elapsed = time.perf_counter() - started
        left = sum(s.count for s in await setup.queue_size())
        if done != count or left:
            raise RuntimeError(f"expected {count} done, ran {done}, {left} left in the queue")
        assert first_at is not None
        emit(
            drain=count / elapsed,
            seconds=elapsed,
            open_s=opened - started,
            first_work_s=first_at - started,
        )
        return

    if args.scenario == "latency":
        pgq = PgQueuer(AsyncpgDriver(await connect()))
        started_at: dict[str, float] = {}
        arrived = asyncio.Event()

        @pgq.entrypoint(ENTRYPOINT)
        async def record(job: Job) -> None:
            assert job.payload is not None
            started_at[json.loads(job.payload)["key"]] = time.perf_counter()
            arrived.set()

        worker = asyncio.create_task(
            pgq.run(
                batch_size=settings["batch_size"],
                max_concurrent_tasks=settings["max_concurrent_tasks"],
                dequeue_timeout=timedelta(seconds=30),
            )
        )
        await asyncio.sleep(0.5)  # the worker is listening
        delays: list[float] = []
        calls: list[float] = []
        starts: list[float] = []
        for i in range(args.warmup + args.samples):
            key = payload(i)["key"]
            called = time.perf_counter()
            await setup.enqueue(ENTRYPOINT, _encode(i), 0)
            returned = time.perf_counter()
            async with asyncio.timeout(10):
                while key not in started_at:
                    await arrived.wait()
                    arrived.clear()
            if i >= args.warmup:
                delays.append(started_at[key] - returned)
                calls.append(returned - called)
                starts.append(started_at[key] - called)
            await asyncio.sleep(args.interval)
        pgq.shutdown.set()
        await worker
        emit(**latency_metrics(delays), **call_metrics(calls, starts))
        return

    sys.exit(f"pgqueuer: scenario {args.scenario!r} is not measured for this system")


if __name__ == "__main__":
    import uvloop

    uvloop.run(main())
