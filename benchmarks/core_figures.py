"""Quick core figures for one process (issue 2's note):

* throughput: 10,000 resources informed (bulk, through an informer) until
  all are synced by a no-op controller;
* latency: one ``inform`` every 20 ms on an idle client; delay from
  ``inform`` returning to ``work`` starting, median and p99.

Usage: python benchmarks/core_figures.py [--dsn DSN] [--count N]
"""

from __future__ import annotations

import argparse
import statistics
import time
import uuid
from dataclasses import dataclass
from typing import ClassVar

import psycopg
import trio

import trio_delta as delta


@dataclass
class Job:
    kind: ClassVar[str] = "job"
    key: str

    def id(self) -> str:
        return self.key


class BulkController(delta.Controller[Job]):
    def __init__(self, count: int) -> None:
        self.count = count
        self.done = 0
        self.finished = trio.Event()

    async def inform(self, opts: delta.InformOptions, send: trio.MemorySendChannel[Job]) -> None:
        async with send:
            for i in range(self.count):
                await send.send(Job(f"j{i}"))

    async def work(self, resource: delta.Resource[Job]) -> None:
        self.done += 1
        if self.done == self.count:
            self.finished.set()


class LatencyController(delta.Controller[Job]):
    def __init__(self) -> None:
        self.started: dict[str, float] = {}
        self.event = trio.Event()

    async def work(self, resource: delta.Resource[Job]) -> None:
        self.started[resource.object.key] = time.perf_counter()
        self.event.set()


async def throughput(dsn: str, schema: str, count: int, workers: int) -> float:
    ctl = BulkController(count)
    controllers = delta.Controllers()
    delta.add_controller(controllers, ctl)
    config = delta.Config(schema=schema, batch_size=500)
    async with delta.open_delta_client(
        dsn,
        controllers,
        namespaces={"default": delta.NamespaceConfig(max_workers=workers)},
        config=config,
    ):
        t0 = time.perf_counter()
        await ctl.finished.wait()
        return count / (time.perf_counter() - t0)


async def latency(dsn: str, schema: str, samples: int) -> list[float]:
    ctl = LatencyController()
    controllers = delta.Controllers()
    delta.add_controller(controllers, ctl)
    config = delta.Config(schema=schema, inform_interval=-1)
    delays: list[float] = []
    async with delta.open_delta_client(dsn, controllers, config=config) as client:
        for i in range(samples):
            key = f"l{i}"
            await client.inform(Job(key))
            returned = time.perf_counter()
            with trio.fail_after(5):
                while key not in ctl.started:
                    await ctl.event.wait()
                    ctl.event = trio.Event()
            delays.append(ctl.started[key] - returned)
            await trio.sleep(0.02)
    return delays


def fresh_schema(dsn: str) -> str:
    return f"bench_{uuid.uuid4().hex[:10]}"


def drop(dsn: str, schema: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(
            psycopg.sql.SQL("drop schema {} cascade").format(psycopg.sql.Identifier(schema))
        )


async def main(dsn: str, count: int, workers: int, samples: int) -> None:
    for name in ("throughput", "latency"):
        schema = fresh_schema(dsn)
        await delta.migrate(dsn, schema=schema)
        try:
            if name == "throughput":
                rate = await throughput(dsn, schema, count, workers)
                print(
                    f"throughput: {count} resources inform->synced, max_workers={workers}: "
                    f"{rate:,.0f} resources/s"
                )
            else:
                d = sorted(await latency(dsn, schema, samples))
                print(
                    f"latency inform-returned -> work-started over {samples} informs: "
                    f"p50 {statistics.median(d) * 1000:.2f} ms, "
                    f"p95 {d[int(len(d) * 0.95)] * 1000:.2f} ms, "
                    f"p99 {d[int(len(d) * 0.99)] * 1000:.2f} ms"
                )
        finally:
            drop(dsn, schema)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--dsn", default="host=127.0.0.1 user=postgres dbname=test")
    parser.add_argument("--count", type=int, default=10_000)
    parser.add_argument("--workers", type=int, default=100)
    parser.add_argument("--samples", type=int, default=300)
    a = parser.parse_args()
    trio.run(main, a.dsn, a.count, a.workers, a.samples)
