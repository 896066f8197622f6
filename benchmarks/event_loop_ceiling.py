"""The I/O-bound drain's ceiling: its waits on an event loop alone.

    python benchmarks/event_loop_ceiling.py trio --count 5000

``--concurrency`` tasks take ``--count`` jobs from a queue and await
``--seconds`` on each, with no database and no library: the most any
library on that event loop can reach in ``drain_io`` on this machine. The
ideal (concurrency / seconds) assumes every wait ends on time; a loop's
timers wake up to a millisecond late (epoll's resolution), and a wave of
tasks whose waits end together queues for the one thread. ``run.py``
runs this beside ``drain_io`` (``drain_io_loop``): Trio for trio_delta,
uvloop for pgqueuer, asyncio for procrastinate, as their children run.
"""

from __future__ import annotations

import argparse
import asyncio
import time

import trio
from _common import emit

# Both loops take their jobs from one shared iterator: no hand-over that
# yields to the scheduler (a Trio memory channel would, asyncio.Queue's
# get_nowait does not), so what is measured is the waits alone.


async def on_trio(count: int, concurrency: int, seconds: float) -> float:
    jobs = iter(range(count))

    async def task() -> None:
        for _ in jobs:
            await trio.sleep(seconds)

    started = time.perf_counter()
    async with trio.open_nursery() as nursery:
        for _ in range(concurrency):
            nursery.start_soon(task)
    return time.perf_counter() - started


async def on_asyncio(count: int, concurrency: int, seconds: float) -> float:
    jobs = iter(range(count))

    async def task() -> None:
        for _ in jobs:
            await asyncio.sleep(seconds)

    started = time.perf_counter()
    await asyncio.gather(*(task() for _ in range(concurrency)))
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("loop", choices=["trio", "asyncio", "uvloop"])
    parser.add_argument("--count", type=int, default=5_000)
    parser.add_argument("--concurrency", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=0.02)
    args = parser.parse_args()
    shape = (args.count, args.concurrency, args.seconds)
    if args.loop == "trio":
        elapsed = trio.run(on_trio, *shape)
    elif args.loop == "uvloop":
        import uvloop

        elapsed = uvloop.run(on_asyncio(*shape))
    else:
        elapsed = asyncio.run(on_asyncio(*shape))
    emit(drain=args.count / elapsed, seconds=elapsed)


if __name__ == "__main__":
    main()
