"""A simulated day at default settings costs little real time.

One test client with the default ``Config`` (only the retry policy is set,
so that retries land within the hour): an informer that runs every hour and
yields 50 objects whose content changed, and work that fails now and then
(a deterministic pattern by object, revision and attempt) and is retried.
Under the autojump clock, 24 simulated hours should take about 2 s of real
time (they took ~30 s while the fetcher polled every simulated second),
replay identically, and every retry must start exactly when it is due.

Most of what is left is the leader renewing its lease every 5 s (a third of
the default TTL, as documented): 17,280 wake-ups a simulated day.
"""

from __future__ import annotations

import hashlib
import logging
import random
import time
from dataclasses import dataclass
from typing import ClassVar

import trio
import trio.testing

import trio_delta as delta
from trio_delta.testing import open_test_client, seed_trio_scheduler

HOUR = 3600.0
OBJECTS = 50
WORK_SECONDS = 0.25
#: (time, kind, object_id, attempt, outcome); time relative to the start.
Trace = list[tuple[float, str, str, int, str]]


def retry_delay(attempt: int) -> float:
    return 30.0 * attempt


@dataclass
class Doc:
    kind: ClassVar[str] = "doc"
    name: str
    revision: int

    def id(self) -> str:
        return self.name


def fails(name: str, revision: int, attempt: int) -> bool:
    """About a third of attempts fail, the same ones on every run."""
    key = f"{name}:{revision}:{attempt}".encode()
    return hashlib.blake2b(key, digest_size=1).digest()[0] < 85


class DocController(delta.Controller[Doc]):
    def __init__(self, trace: Trace, t0: float) -> None:
        self.trace = trace
        self.t0 = t0
        self.revision = 0

    def _log(self, kind: str, object_id: str, attempt: int, outcome: str) -> None:
        self.trace.append(
            (round(trio.current_time() - self.t0, 6), kind, object_id, attempt, outcome)
        )

    async def inform(self, opts: delta.InformOptions, send: trio.MemorySendChannel[Doc]) -> None:
        self.revision += 1  # every object changed since the last run
        self._log("inform", "", 0, str(self.revision))
        async with send:
            for i in range(OBJECTS):
                await send.send(Doc(f"d{i}", self.revision))

    async def work(self, resource: delta.Resource[Doc]) -> None:
        doc = resource.object
        self._log("start", doc.name, resource.attempt, "")
        await trio.sleep(WORK_SECONDS)
        if fails(doc.name, doc.revision, resource.attempt):
            self._log("end", doc.name, resource.attempt, "failed")
            raise RuntimeError("flaky")
        self._log("end", doc.name, resource.attempt, "synced")


async def simulate_day() -> tuple[Trace, list[delta.ResourceState]]:
    trace: Trace = []
    controllers = delta.Controllers()
    delta.add_controller(controllers, DocController(trace, trio.current_time()))
    # What open_test_client uses by default, plus the retry policy.
    config = delta.Config(
        client_id="test-client", retry_policy=retry_delay, random=random.Random(0)
    )
    async with open_test_client(controllers, config=config) as t:
        await trio.sleep(24 * HOUR)
        states = [row.state for row in await t.resources(kind="doc")]
    # Works that end at the same instant have no order of their own (Trio
    # wakes them in no particular order); the trace orders them canonically.
    return sorted(trace), states


def run_once() -> tuple[Trace, list[delta.ResourceState], float]:
    seed_trio_scheduler(0)
    # What is measured is the engine, not the logging of a thousand retries.
    logger = logging.getLogger("trio_delta")
    level = logger.level
    logger.setLevel(logging.ERROR)
    started = time.perf_counter()
    try:
        trace, states = trio.run(simulate_day, clock=trio.testing.MockClock(autojump_threshold=0))
    finally:
        logger.setLevel(level)
    return trace, states, time.perf_counter() - started


def test_a_simulated_day_at_default_settings_costs_little_real_time() -> None:
    first, states, seconds = run_once()
    again, states_again, seconds_again = run_once()
    print(f"one simulated day: {seconds:.3f}s, {seconds_again:.3f}s of real time")
    # The faster of the two: the other processes of a busy machine only add.
    # The aim is 2 s; measured 1.9-2.8 s on a 2-core machine, most of it the
    # leader renewing every 5 s (17,280 rounds). Asserted with headroom so
    # that CI catches a return of the per-second poll (~30 s), not noise.
    assert min(seconds, seconds_again) < 6.0, (seconds, seconds_again)
    assert (again, states_again) == (first, states)

    informs = [entry for entry in first if entry[1] == "inform"]
    assert 24 <= len(informs) <= 25  # at the start, then hourly plus jitter
    ends = [entry for entry in first if entry[1] == "end"]
    assert sum(1 for e in ends if e[3] == 1) == OBJECTS * len(informs)  # all changed, all worked
    failed = [e for e in ends if e[4] == "failed"]
    assert len(failed) > 100  # the flaky work did fail, often
    assert states == [delta.ResourceState.SYNCED] * OBJECTS  # and every retry chain ended well

    # Each retry starts when it is due (the failure plus the policy's
    # delay): the fetcher sleeps until then.
    retried = 0
    for at, _, name, attempt, _ in failed:
        # The object's next attempt; a new revision informed meanwhile
        # starts again at attempt 1 instead, and is no retry.
        start = next(e for e in first if e[0] >= at and e[1:3] == ("start", name))
        if start[3] == attempt + 1:
            retried += 1
            # (to the microsecond the stored times keep; a poll was up to 1 s late)
            assert abs(start[0] - (at + retry_delay(attempt))) < 1e-3, (name, at, start)
    assert retried > 100
