"""A trio_delta client in a process of its own, for the multi-process tests.

    python client_runner.py --dsn DSN --schema SCHEMA --state FILE [options]

It opens a client on ``--schema`` with a controller for kind ``job`` and
rewrites ``--state`` (JSON: id, pid, phase, is_leader) every 20 ms, atomically.
With ``--work-log``, every ``work`` call appends ``"<object_id> <attempt>
start <unix time>"`` to that file as it starts, ``... end <unix time>`` as
it returns and ``... cancelled <unix time>`` if it is cancelled;
``--work-seconds`` is how long work takes, and with ``--block`` it never
returns (a worker to be killed mid-work).
``--inform N`` informs jobs ``job-0`` .. ``job-N-1`` once the client runs.
SIGTERM leaves the client's ``async with`` block (a graceful stop); the
state file then says ``"phase": "stopped"``.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import trio

import trio_delta as delta

#: ``--global-parallelism``, ``--rate`` and ``--burst``: the kind's
#: cluster-wide bounds, read by ``settings()``.
GLOBAL_PARALLELISM: int | None = None
RATE_LIMIT: delta.RateLimit | None = None


@dataclass
class Job:
    kind: ClassVar[str] = "job"
    key: str

    def id(self) -> str:
        return self.key

    @classmethod
    def settings(cls) -> delta.ObjectSettings:
        return delta.ObjectSettings(global_parallelism=GLOBAL_PARALLELISM, rate_limit=RATE_LIMIT)


class JobController(delta.Controller[Job]):
    def __init__(self, work_log: Path | None, block: bool, seconds: float) -> None:
        self.work_log = work_log
        self.block = block
        self.seconds = seconds

    def log(self, resource: delta.Resource[Job], event: str) -> None:
        if self.work_log is not None:
            with self.work_log.open("a") as f:
                f.write(f"{resource.object_id} {resource.attempt} {event} {time.time()!r}\n")

    async def work(self, resource: delta.Resource[Job]) -> None:
        self.log(resource, "start")
        try:
            if self.block:
                await trio.sleep_forever()
            await trio.sleep(self.seconds)
            self.log(resource, "end")
        except trio.Cancelled:
            self.log(resource, "cancelled")
            raise


def write_state(path: Path, **state: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps({**state, "pid": os.getpid(), "t": time.time()}))
    os.replace(tmp, path)


async def main(args: argparse.Namespace) -> None:
    global GLOBAL_PARALLELISM, RATE_LIMIT
    GLOBAL_PARALLELISM = args.global_parallelism
    if args.rate is not None:
        RATE_LIMIT = delta.RateLimit(per_second=args.rate, burst=args.burst)
    state_path = Path(args.state)
    controllers = delta.Controllers()
    work_log = Path(args.work_log) if args.work_log else None
    delta.add_controller(controllers, JobController(work_log, args.block, args.work_seconds))
    config = delta.Config(
        schema=args.schema,
        leader_ttl=args.leader_ttl,
        maintenance_interval=args.maintenance_interval,
        work_timeout=args.work_timeout,
        rescue_after=args.rescue_after,
        poll_interval=0.2,
        shutdown_grace=args.shutdown_grace,
        retry_policy=lambda attempt: 0.05,
    )
    # Before the client opens, so an early SIGTERM is a graceful stop too.
    with trio.open_signal_receiver(signal.SIGTERM) as signals:
        async with delta.open_delta_client(args.dsn, controllers, config=config) as client:

            async def report() -> None:
                while True:
                    write_state(
                        state_path, id=client.id, phase="running", is_leader=client.is_leader
                    )
                    await trio.sleep(0.02)

            async with trio.open_nursery() as nursery:
                nursery.start_soon(report)
                for i in range(args.inform):
                    await client.inform(Job(f"job-{i}"))
                async for _ in signals:
                    break
                nursery.cancel_scope.cancel()
        write_state(state_path, id=client.id, phase="stopped", is_leader=client.is_leader)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--dsn", required=True)
    parser.add_argument("--schema", required=True)
    parser.add_argument("--state", required=True)
    parser.add_argument("--work-log")
    parser.add_argument("--block", action="store_true")
    parser.add_argument("--work-seconds", type=float, default=0.0)
    parser.add_argument("--global-parallelism", type=int, default=None)
    parser.add_argument("--rate", type=float, default=None)
    parser.add_argument("--burst", type=int, default=1)
    parser.add_argument("--inform", type=int, default=0)
    parser.add_argument("--leader-ttl", type=float, default=1.0)
    parser.add_argument("--maintenance-interval", type=float, default=0.2)
    parser.add_argument("--work-timeout", type=float, default=60.0)
    parser.add_argument("--rescue-after", type=float, default=60.0)
    parser.add_argument("--shutdown-grace", type=float, default=1.0)
    trio.run(main, parser.parse_args())
