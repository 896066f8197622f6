"""procrastinate's side of the benchmarks: one scenario in this (fresh) process.

Run by ``run.py``; by hand::

    python benchmarks/bench_procrastinate.py drain --dsn DSN --schema bench_x --count 20000

procrastinate's schema is applied into ``--schema`` through the connection's
``search_path``; the caller drops it afterwards. Configured for throughput as
its docs suggest ("Execute multiple jobs at the same time": async tasks with
worker ``concurrency``; batch deferring for bulk enqueue). Settings
(``--settings '{...}'``):

* ``concurrency``: the worker's sub-workers (``run_worker_async(concurrency=)``);
* ``pool_size``: the psycopg pool's size (None: ``concurrency + 2``, so every
  sub-worker and the LISTEN connection have one);
* ``delete_jobs``: ``run_worker_async(delete_jobs=)``: ``always``, as its docs
  advise for production ("Delete finished jobs"), keeps the jobs table small;
* ``enqueue_chunk``: jobs per ``batch_defer_async`` call in the inform scenario.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from typing import Any

from _common import (
    call_metrics,
    child_parser,
    emit,
    latency_metrics,
    payload,
    quiet_logging,
    settings_from,
)
from psycopg.conninfo import make_conninfo

DEFAULTS: dict[str, Any] = {
    "concurrency": 30,
    "pool_size": None,
    "delete_jobs": "always",
    "enqueue_chunk": 10_000,
    # "off" for the equal-durability drain: commits as trio_delta's claims
    # and outcomes make them (see Config.async_commit).
    "synchronous_commit": "on",
    "work_seconds": 0.0,  # drain: each job awaits this long (drain_io: 0.02)
}
TASK = "noop"


async def main() -> None:
    args = child_parser(__doc__ or "").parse_args()
    settings = settings_from(args, DEFAULTS)
    quiet_logging()
    import procrastinate

    size = settings["pool_size"] or settings["concurrency"] + 2
    options = f"-c search_path={args.schema} -c synchronous_commit={settings['synchronous_commit']}"
    conninfo = make_conninfo(args.dsn, options=options)
    app = procrastinate.App(
        connector=procrastinate.PsycopgConnector(
            conninfo=conninfo, min_size=min(size, 4), max_size=size
        )
    )
    done = 0
    first_at: float | None = None
    started_at: dict[str, float] = {}
    arrived = asyncio.Event()

    @app.task(name=TASK)
    async def noop(key: str, value: int) -> None:
        nonlocal done, first_at
        now = time.perf_counter()
        if first_at is None:
            first_at = now
        if settings["work_seconds"]:
            await asyncio.sleep(settings["work_seconds"])
        done += 1
        if args.scenario == "latency":
            started_at[key] = now
            arrived.set()

    def worker(wait: bool) -> Any:
        return app.run_worker_async(
            concurrency=settings["concurrency"],
            wait=wait,
            install_signal_handlers=False,
            delete_jobs=settings["delete_jobs"],
        )

    async def count_todo() -> int:
        rows = await app.connector.execute_query_all_async(
            "select count(*) as n from procrastinate_jobs where status in ('todo', 'doing')"
        )
        return int(rows[0]["n"])

    async with app.open_async():
        await app.schema_manager.apply_schema_async()

        if args.scenario == "inform":
            count, chunk = args.count, settings["enqueue_chunk"]
            started = time.perf_counter()
            for lo in range(0, count, chunk):
                await noop.batch_defer_async(
                    *(payload(i) for i in range(lo, min(lo + chunk, count)))
                )
            elapsed = time.perf_counter() - started
            queued = await count_todo()
            if queued != count:
                raise RuntimeError(f"expected {count} queued, found {queued}")
            emit(inform=count / elapsed, seconds=elapsed)

        elif args.scenario == "inform_concurrent":
            keys = iter(range(args.count))

            async def task() -> None:
                for i in keys:
                    await noop.defer_async(**payload(i))

            started = time.perf_counter()
            await asyncio.gather(*(task() for _ in range(args.samples)))
            elapsed = time.perf_counter() - started
            queued = await count_todo()
            if queued != args.count:
                raise RuntimeError(f"expected {args.count} queued, found {queued}")
            emit(inform_concurrent=args.count / elapsed, seconds=elapsed)

        elif args.scenario == "drain":
            count = args.count
            chunk = settings["enqueue_chunk"]
            for lo in range(0, count, chunk):
                await noop.batch_defer_async(
                    *(payload(i) for i in range(lo, min(lo + chunk, count)))
                )

        elif args.scenario == "latency":
            task = asyncio.create_task(worker(wait=True))
            await asyncio.sleep(0.5)  # the worker is listening
            delays: list[float] = []
            calls: list[float] = []
            starts: list[float] = []
            for i in range(args.warmup + args.samples):
                item = payload(i)
                called = time.perf_counter()
                await noop.defer_async(**item)
                returned = time.perf_counter()
                async with asyncio.timeout(10):
                    while item["key"] not in started_at:
                        await arrived.wait()
                        arrived.clear()
                if i >= args.warmup:
                    delays.append(started_at[item["key"]] - returned)
                    calls.append(returned - called)
                    starts.append(started_at[item["key"]] - called)
                await asyncio.sleep(args.interval)
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait_for(task, timeout=10)
            emit(**latency_metrics(delays), **call_metrics(calls, starts))

        else:
            sys.exit(f"procrastinate: scenario {args.scenario!r} is not measured for this system")

    if args.scenario == "drain":
        # Timed from opening the worker's pool, as trio_delta's drain is timed
        # from opening its client (pool included).
        started = time.perf_counter()
        async with app.open_async():
            opened = time.perf_counter()
            await worker(wait=False)
            elapsed = time.perf_counter() - started
            left = await count_todo()
        if done != args.count or left:
            raise RuntimeError(f"expected {args.count} done, ran {done}, {left} left")
        assert first_at is not None
        emit(
            drain=args.count / elapsed,
            seconds=elapsed,
            open_s=opened - started,
            first_work_s=first_at - started,
        )


if __name__ == "__main__":
    asyncio.run(main())
