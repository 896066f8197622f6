"""Run one informer yielding N objects in a fresh process; print RSS figures.

Usage: python -m tests.procs.inform_memory DSN SCHEMA COUNT
Prints one line: ``objects=N seconds=S rss_before_kb=A rss_peak_kb=B``.
The client serves a namespace the objects are not in, so this measures the
inform path alone (informer -> bounded channel -> batched upserts).
"""

from __future__ import annotations

import resource
import sys
import time
from dataclasses import dataclass
from typing import ClassVar

import trio

import trio_delta as delta


@dataclass
class Blob:
    kind: ClassVar[str] = "blob"
    key: str
    payload: str

    def id(self) -> str:
        return self.key


class BlobController(delta.Controller[Blob]):
    def __init__(self, count: int) -> None:
        self.count = count
        self.done = trio.Event()

    async def inform(self, opts: delta.InformOptions, send: trio.MemorySendChannel[Blob]) -> None:
        async with send:
            for i in range(self.count):
                # Objects are made lazily: only the channel's buffer holds them.
                await send.send(Blob(f"b{i}", "x" * 200))

    async def work(self, resource: delta.Resource[Blob]) -> None:
        raise AssertionError("not worked in this measurement")


async def _run_recorded(client: delta.Client) -> bool:
    rows = await client.list_resources(kind="blob", limit=1)
    return (
        bool(rows)
        and client.stats.informer_runs >= 1
        and (await client.get_informer("blob")).last_run_at is not None
    )


async def main(dsn: str, schema: str, count: int) -> None:
    ctl = BlobController(count)
    controllers = delta.Controllers()
    delta.add_controller(controllers, ctl)
    config = delta.Config(schema=schema, batch_size=500)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.perf_counter()
    async with delta.open_delta_client(
        dsn, controllers, namespaces={"elsewhere": delta.NamespaceConfig()}, config=config
    ) as client:
        # The run is over once it has been counted and recorded.
        while client.stats.informer_runs < 1 or client.stats.informer_failures:
            await trio.sleep(0.05)
        while not await _run_recorded(client):
            await trio.sleep(0.05)
    elapsed = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(f"objects={count} seconds={elapsed:.2f} rss_before_kb={before} rss_peak_kb={peak}")


if __name__ == "__main__":
    trio.run(main, sys.argv[1], sys.argv[2], int(sys.argv[3]))
