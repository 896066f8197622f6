"""trio_delta's side of the benchmarks: one scenario in this (fresh) process.

Run by ``run.py``; by hand::

    python benchmarks/bench_trio_delta.py drain --dsn DSN --schema bench_x --count 20000

The schema is created and migrated here and left for the caller to drop.
To profile the drain alone: ``inform`` then ``drain --no-seed`` on one schema.
Settings (``--settings '{"max_workers": 100, "batch_size": 500}'``):

* ``max_workers``: the namespace's ``NamespaceConfig.max_workers``;
* ``batch_size``: ``Config.batch_size`` (rows per claim, outcome and upsert statement);
* ``pool_size``: ``Config.pool_size`` (None: trio_delta sizes it);
* ``latency_informer``: ``same`` (the working client informs, waking its own
  fetcher directly) or ``other`` (a second client in this process informs, so
  the worker hears of it through Postgres' NOTIFY, as the peers' workers do);
  or an inform in the application's own transaction, timed from its commit:
  ``transaction`` (``client.transaction()``), ``trio_connection`` (on
  ``trio_delta.connect``), ``producer`` (``trio_delta.producer.inform`` on a
  synchronous psycopg connection, in a thread).
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from typing import Any, ClassVar

import psycopg
import trio
from _common import (
    KEY_PREFIX,
    call_metrics,
    child_parser,
    emit,
    latency_metrics,
    quiet_logging,
    rss_now_kb,
    rss_peak_kb,
    settings_from,
)
from psycopg import sql

import trio_delta as delta
from trio_delta import producer

# High-throughput settings: 500 workers (pgqueuer runs unlimited concurrency
# with batches of 500) and statements of up to 2,000 rows (pgqueuer's bulk
# enqueue takes chunks of 10,000). Measured here with no-op work (20,000-row
# drain, five runs each): 100 workers / 500 rows ~19,500/s, 250 / 2,000
# ~22,500/s, 500 / 2,000 ~24,900/s; 100,000-object inform: batches of 500
# ~44,800/s, 2,000 ~53,000/s.
DEFAULTS: dict[str, Any] = {
    "max_workers": 500,
    "prefetch": 0,  # drain_io: 200 (rows claimed ahead of free workers)
    "batch_size": 2000,
    "pool_size": None,
    "latency_informer": "same",
    "work_seconds": 0.0,  # drain: each work awaits this long (drain_io: 0.02)
    # How the client connects (docs/deployment.md; benchmarks/connection_modes.py).
    "prepared_statements": True,
    "listen": True,
    "dedicated_connections": True,
    "listen_dsn": None,
    # PrometheusMetrics as the observer (docs/operating.md), on its own registry.
    "metrics": False,
    # OpenTelemetryTracing, on the SDK with a batch processor whose exporter
    # drops the spans (the cost of making them, not of a collector).
    "tracing": False,
    # With tracing: the share of traces recorded (the SDK's ratio sampler).
    "tracing_ratio": 1.0,
    # How drain's rows are written first (untimed): "informer", one run;
    # "requests", one client.inform per object from 100 tasks, as a web
    # service informs: with tracing, each inform is a trace of its own,
    # sampled or not, and its work follows that decision.
    "seed": "informer",
}
KIND = "item"
#: drain with ``"seed": "requests"``: tasks informing at once.
SEED_TASKS = 100
POLL = 0.005  # seconds between looks at the client's counters (Client.stats copies)


@dataclass
class Item:
    kind: ClassVar[str] = KIND
    key: str
    value: int

    def id(self) -> str:
        return self.key


class Seeder(delta.Controller[Item]):
    """An informer yielding ``count`` items, made lazily; never works anything."""

    def __init__(self, count: int) -> None:
        self.count = count
        self.started_at: float | None = None
        self.sent_at: float | None = None

    async def inform(self, opts: delta.InformOptions, send: trio.MemorySendChannel[Item]) -> None:
        self.started_at = time.perf_counter()
        async with send:
            for i in range(self.count):
                await send.send(Item(f"{KEY_PREFIX}-{i}", i))
        self.sent_at = time.perf_counter()

    async def work(self, resource: delta.Resource[Item]) -> None:
        raise AssertionError("the seeding client works nothing")


class NoOp(delta.Controller[Item]):
    """A no-op worker; counts handler starts and records their times by key."""

    def __init__(self, *, record: bool = False, seconds: float = 0.0) -> None:
        self.seconds = seconds
        self.started = 0
        self.first_at: float | None = None
        self.record = record
        self.started_at: dict[str, float] = {}
        self.event = trio.Event()

    async def work(self, resource: delta.Resource[Item]) -> None:
        now = time.perf_counter()
        self.started += 1
        if self.first_at is None:
            self.first_at = now
        if self.record:
            self.started_at[resource.object.key] = now
            self.event.set()
        if self.seconds:
            await trio.sleep(self.seconds)  # I/O-bound work: a wait, no CPU


def _observer(settings: dict[str, Any]) -> delta.Observer | None:
    observers: list[delta.Observer] = []
    if settings["metrics"]:
        from prometheus_client import CollectorRegistry

        from trio_delta.metrics import PrometheusMetrics

        observers.append(PrometheusMetrics(CollectorRegistry()))
    if settings["tracing"]:
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import (
            BatchSpanProcessor,
            SpanExporter,
            SpanExportResult,
        )

        from trio_delta.tracing import OpenTelemetryTracing

        class Dropped(SpanExporter):
            def export(self, spans: Any) -> SpanExportResult:
                return SpanExportResult.SUCCESS

        from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased

        sampler = ParentBased(TraceIdRatioBased(settings["tracing_ratio"]))
        provider = TracerProvider(sampler=sampler)
        provider.add_span_processor(BatchSpanProcessor(Dropped()))
        observers.append(OpenTelemetryTracing(provider))
    if not observers:
        return None
    return observers[0] if len(observers) == 1 else delta.Observers(*observers)


class RunEnded(delta.Observer):
    """Set once an informer run has ended and been recorded: the inform
    scenarios wait on this rather than asking the database every few
    milliseconds, which the peers' bulk enqueue (awaited directly) does not."""

    def __init__(self) -> None:
        self.ended = trio.Event()
        self.ok = False

    def informer_run(self, kind: str, ok: bool, seconds: float, objects: int) -> None:
        self.ok = ok
        self.ended.set()


def _config(
    schema: str, settings: dict[str, Any], *, also: delta.Observer | None = None, **extra: Any
) -> delta.Config:
    observer = _observer(settings)
    if also is not None:
        observer = also if observer is None else delta.Observers(observer, also)
    return delta.Config(
        schema=schema,
        batch_size=settings["batch_size"],
        pool_size=settings["pool_size"],
        prepared_statements=settings["prepared_statements"],
        listen=settings["listen"],
        dedicated_connections=settings["dedicated_connections"],
        listen_dsn=settings["listen_dsn"],
        observer=observer,
        **extra,
    )


async def inform_all(
    dsn: str, schema: str, count: int, settings: dict[str, Any]
) -> dict[str, float]:
    """One informer run of ``count`` objects, on a client that works nothing
    (it serves a namespace the objects are not in). Returns timings; the run
    is done once the client has recorded it (every batch is then committed)."""
    seeder = Seeder(count)
    controllers = delta.Controllers()
    delta.add_controller(controllers, seeder)
    run_ended = RunEnded()
    config = _config(schema, settings, also=run_ended, inform_timeout=3600.0)
    opened = time.perf_counter()
    async with delta.open_delta_client(
        dsn,
        controllers,
        namespaces={"elsewhere": delta.NamespaceConfig(max_workers=1)},
        config=config,
    ) as client:
        await run_ended.ended.wait()
        done = time.perf_counter()
        state = await client.get_informer(KIND)
        # The hook also fires when recording the run failed: then no end.
        if not run_ended.ok or state is None or state.last_run_at is None or state.last_error:
            raise RuntimeError(f"informer run failed: {state and state.last_error}")
    assert seeder.started_at is not None
    assert seeder.sent_at is not None
    return {
        "seconds": done - seeder.started_at,
        "startup_s": seeder.started_at - opened,
        "send_s": seeder.sent_at - seeder.started_at,
    }


def producing_client(
    dsn: str, schema: str, settings: dict[str, Any]
) -> contextlib.AbstractAsyncContextManager[delta.Client]:
    """A client that informs and works nothing (it serves a namespace the
    objects are not in), and runs no informer."""
    controllers = delta.Controllers()
    delta.add_controller(controllers, Seeder(0))
    return delta.open_delta_client(
        dsn,
        controllers,
        namespaces={"elsewhere": delta.NamespaceConfig(max_workers=1)},
        config=_config(schema, settings, inform_interval=-1.0),
    )


async def inform_many(dsn: str, schema: str, count: int, settings: dict[str, Any]) -> float:
    """``client.inform_many`` of ``count`` objects on a client that works
    nothing; seconds from making the objects until the call returns (its
    transaction committed)."""
    async with producing_client(dsn, schema, settings) as client:
        started = time.perf_counter()
        results = await client.inform_many([Item(f"{KEY_PREFIX}-{i}", i) for i in range(count)])
        elapsed = time.perf_counter() - started
    if len(results) != count or not all(r.changed for r in results):
        raise RuntimeError(f"expected {count} new resources, got {len(results)} results")
    return elapsed


async def inform_concurrent(
    dsn: str, schema: str, count: int, tasks: int, settings: dict[str, Any]
) -> float:
    """``tasks`` tasks each calling ``client.inform`` for one object at a
    time until ``count`` are informed (a web service informing per
    request); seconds for all of them."""
    async with producing_client(dsn, schema, settings) as client:
        keys = iter(range(count))

        async def task() -> None:
            for i in keys:
                await client.inform(Item(f"{KEY_PREFIX}-{i}", i))

        started = time.perf_counter()
        async with trio.open_nursery() as nursery:
            for _ in range(tasks):
                nursery.start_soon(task)
        return time.perf_counter() - started


ALL_ROWS = sql.SQL("true")


def count_rows(dsn: str, schema: str, where: sql.Composable = ALL_ROWS) -> int:
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute(
            sql.SQL("select count(*) from {}.resources where {}").format(
                sql.Identifier(schema), where
            )
        ).fetchone()
        assert row is not None
        return int(row[0])


def add_resident_rows(dsn: str, schema: str, count: int) -> None:
    """``count`` synced rows of the same kind and namespace, cloned in SQL from
    an informed row (setup, not timed). Columns are read from the catalog so
    this survives schema changes; only the ones we override must exist."""
    ident = sql.Identifier(schema)
    overrides = {
        "object_id": sql.SQL("'resident-' || g"),
        "state": sql.SQL("'synced'"),
        "attempt": sql.SQL("1"),
        "attempted_at": sql.SQL("t.created_at"),
        "attempted_by": sql.SQL("'bench'"),
        "synced_at": sql.SQL("t.created_at"),
    }
    with psycopg.connect(dsn, autocommit=True) as conn:
        columns = [
            r[0]
            for r in conn.execute(
                "select column_name from information_schema.columns where table_schema = %s "
                "and table_name = 'resources' and is_identity = 'NO' order by ordinal_position",
                [schema],
            ).fetchall()
        ]
        exprs = [overrides.get(c, sql.SQL("t.{}").format(sql.Identifier(c))) for c in columns]
        conn.execute(
            sql.SQL(
                "insert into {s}.resources ({cols}) select {exprs} from "
                "(select * from {s}.resources order by id limit 1) t, generate_series(1, %s) g"
            ).format(
                s=ident,
                cols=sql.SQL(", ").join(map(sql.Identifier, columns)),
                exprs=sql.SQL(", ").join(exprs),
            ),
            [count],
        )
        conn.execute(sql.SQL("vacuum analyze {}.resources").format(ident))


async def drain(
    dsn: str, schema: str, count: int, settings: dict[str, Any], resident: int, *, seed: bool = True
) -> dict[str, float]:
    """``count`` scheduled resources (informed first, untimed), then a fresh
    client with a no-op controller: time from opening it until every outcome
    is written. ``seed=False``: the rows are there already (an ``inform``
    run on the same schema), so a profile of this process shows the drain alone."""
    if seed and settings["seed"] == "requests":
        await inform_concurrent(dsn, schema, count, SEED_TASKS, settings)
    elif seed:
        await inform_all(dsn, schema, count, settings)
    if resident:
        add_resident_rows(dsn, schema, resident)
    ctl = NoOp(seconds=settings["work_seconds"])
    controllers = delta.Controllers()
    delta.add_controller(controllers, ctl)
    config = _config(schema, settings, inform_interval=-1.0)
    started = time.perf_counter()
    async with delta.open_delta_client(
        dsn,
        controllers,
        namespaces={
            "default": delta.NamespaceConfig(
                max_workers=settings["max_workers"], prefetch=settings["prefetch"]
            )
        },
        config=config,
    ) as client:
        opened = time.perf_counter()
        # Polled: the client exposes counters, not an event (costs <= POLL).
        while client.stats.outcomes_written < count:  # noqa: ASYNC110
            await trio.sleep(POLL)
        done = time.perf_counter()
    stopped = time.perf_counter()
    synced = count_rows(dsn, schema, sql.SQL("state = 'synced' and object_id like 'item-%'"))
    if synced != count or ctl.started != count:
        raise RuntimeError(f"expected {count} synced, found {synced} ({ctl.started} worked)")
    elapsed = done - started
    assert ctl.first_at is not None
    return {
        "drain": count / elapsed,
        "seconds": elapsed,
        "open_s": opened - started,
        "first_work_s": ctl.first_at - started,
        "stop_s": stopped - done,
    }


async def latency(
    dsn: str, schema: str, samples: int, warmup: int, interval: float, settings: dict[str, Any]
) -> dict[str, float]:
    """An idle client; one ``inform`` every ``interval``: delay from
    ``inform`` returning to ``work`` starting."""
    ctl = NoOp(record=True)
    controllers = delta.Controllers()
    delta.add_controller(controllers, ctl)
    config = _config(schema, settings, inform_interval=-1.0)
    delays: list[float] = []
    other = delta.Controllers()
    delta.add_controller(other, NoOp())
    async with (
        delta.open_delta_client(
            dsn,
            controllers,
            namespaces={"default": delta.NamespaceConfig(max_workers=settings["max_workers"])},
            config=config,
        ) as client,
        contextlib.AsyncExitStack() as stack,
    ):
        informer = client
        if settings["latency_informer"] == "other":
            informer = await stack.enter_async_context(
                delta.open_delta_client(
                    dsn,
                    other,
                    namespaces={"elsewhere": delta.NamespaceConfig(max_workers=1)},
                    config=config,
                )
            )
        mode = settings["latency_informer"]
        app_conn = (
            await stack.enter_async_context(delta.connect(dsn))
            if mode == "trio_connection"
            else None
        )
        sync_conn = psycopg.connect(dsn) if mode == "producer" else None
        if sync_conn is not None:
            stack.callback(sync_conn.close)

        async def inform(item: Item) -> float:
            """Inform ``item`` the way ``mode`` says; when it was committed."""
            if mode == "transaction":
                async with client.transaction() as tx:
                    await client.inform_tx(tx, item)
            elif app_conn is not None:
                await client.inform_tx(app_conn, item)
                await app_conn.commit()
            elif sync_conn is not None:

                def produce() -> float:
                    producer.inform(sync_conn, item, schema=schema)
                    sync_conn.commit()
                    return time.perf_counter()

                return await trio.to_thread.run_sync(produce)
            else:
                await informer.inform(item)
            return time.perf_counter()

        calls: list[float] = []
        starts: list[float] = []
        for i in range(warmup + samples):
            key = f"{KEY_PREFIX}-{i}"
            called = time.perf_counter()
            returned = await inform(Item(key, i))
            with trio.fail_after(10):
                while key not in ctl.started_at:
                    await ctl.event.wait()
                    ctl.event = trio.Event()
            if i >= warmup:
                delays.append(ctl.started_at[key] - returned)
                calls.append(returned - called)
                starts.append(ctl.started_at[key] - called)
            await trio.sleep(interval)
    return {**latency_metrics(delays), **call_metrics(calls, starts)}


async def main() -> None:
    parser = child_parser(__doc__ or "")
    parser.add_argument(
        "--no-seed",
        action="store_true",
        help="drain: rows were informed already (by an inform run)",
    )
    args = parser.parse_args()
    settings = settings_from(args, DEFAULTS)
    quiet_logging()
    await delta.migrate(args.dsn, schema=args.schema)
    if args.scenario in ("drain", "scale"):
        result = await drain(
            args.dsn, args.schema, args.count, settings, args.resident, seed=not args.no_seed
        )
        if args.scenario == "scale":
            result["resident"] = args.resident
        emit(**result)
    elif args.scenario == "inform":
        timing = await inform_all(args.dsn, args.schema, args.count, settings)
        written = count_rows(args.dsn, args.schema)
        if written != args.count:
            raise RuntimeError(f"expected {args.count} rows, found {written}")
        emit(inform=args.count / timing["seconds"], **timing)
    elif args.scenario == "inform_many":
        seconds = await inform_many(args.dsn, args.schema, args.count, settings)
        written = count_rows(args.dsn, args.schema)
        if written != args.count:
            raise RuntimeError(f"expected {args.count} rows, found {written}")
        emit(inform_many=args.count / seconds, seconds=seconds)
    elif args.scenario == "inform_concurrent":
        seconds = await inform_concurrent(args.dsn, args.schema, args.count, args.samples, settings)
        written = count_rows(args.dsn, args.schema)
        if written != args.count:
            raise RuntimeError(f"expected {args.count} rows, found {written}")
        emit(inform_concurrent=args.count / seconds, seconds=seconds)
    elif args.scenario == "memory":
        before = rss_now_kb()
        timing = await inform_all(args.dsn, args.schema, args.count, settings)
        peak = rss_peak_kb()
        emit(
            memory=(peak - before) / 1024,
            rss_before_mb=before / 1024,
            rss_peak_mb=peak / 1024,
            objects=args.count,
            inform=args.count / timing["seconds"],
            **timing,
        )
    else:
        emit(
            **await latency(
                args.dsn, args.schema, args.samples, args.warmup, args.interval, settings
            )
        )


if __name__ == "__main__":
    trio.run(main)
