"""A forced stop hands back the rows of works that ignore cancellation (a
blocking call in a thread, a shielded wait) before waiting for them, so a
process killed while it waits loses nothing; such a work's result, if it
ever comes, is dropped, and the stop names the works it is waiting for.

On the memory store under the autojump clock; the process-level version is
``tests/cli/test_cli_run_never_hangs_on_blocked_work.py``.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass
from typing import ClassVar

import pytest
import trio
import trio.testing

import trio_delta as delta
from trio_delta._engine.runtime import CANCEL_WAIT
from trio_delta._store.params import ResourceFilter
from trio_delta._types import ResourceRow
from trio_delta.testing import DEFAULT_ANCHOR, MemoryStore, open_test_client

S = delta.ResourceState
GRACE = 1.0
STUBBORN_FOR = 30.0


@dataclass
class Job:
    kind: ClassVar[str] = "job"
    key: str

    def id(self) -> str:
        return self.key


class Stubborn(delta.Controller[Job]):
    """``stuck-*`` works run ``STUBBORN_FOR`` seconds whatever cancels them
    (like a thread started with ``abandon_on_cancel=False``), then succeed;
    the others wait until cancelled."""

    def __init__(self) -> None:
        self.started: set[str] = set()
        self.ended: dict[str, float] = {}
        self.all_started = trio.Event()

    async def inform(self, opts: delta.InformOptions, send: trio.MemorySendChannel[Job]) -> None:
        await send.aclose()

    async def work(self, resource: delta.Resource[Job]) -> None:
        self.started.add(resource.object_id)
        if len(self.started) == 3:
            self.all_started.set()
        if resource.object_id.startswith("stuck"):
            with trio.CancelScope(shield=True):
                await trio.sleep(STUBBORN_FOR)
            self.ended[resource.object_id] = trio.current_time()
            return
        await trio.sleep_forever()


async def _rows(store: MemoryStore) -> dict[str, ResourceRow[object]]:
    return {r.object_id: r for r in await store.insights.list_resources(ResourceFilter())}


async def test_forced_stop_hands_back_stubborn_work_before_waiting_for_it(
    autojump_clock: trio.testing.MockClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="trio_delta")
    ctl = Stubborn()
    controllers = delta.Controllers()
    delta.add_controller(controllers, ctl)
    config = delta.Config(
        random=random.Random(1), client_id="c1", inform_interval=-1, shutdown_grace=GRACE
    )
    store = MemoryStore(anchor=DEFAULT_ANCHOR)
    seen: dict[str, dict[str, ResourceRow[object]]] = {}
    ended_by_then: dict[str, float] = {}

    async def look_while_stopping(stop_began: float) -> None:
        # Just after the forced stop has cancelled and given up on the stuck
        # works, and long before they end.
        await trio.sleep_until(stop_began + GRACE + CANCEL_WAIT + 0.01)
        seen["forced"] = await _rows(store)
        ended_by_then.update(ctl.ended)

    async with trio.open_nursery() as nursery:
        async with open_test_client(controllers, config=config, store=store) as t:
            for key in ("stuck-a", "stuck-b", "polite"):
                await t.client.inform(Job(key))
            await ctl.all_started.wait()
            stop_began = trio.current_time()
            nursery.start_soon(look_while_stopping, stop_began)
        stopped_after = trio.current_time() - stop_began

    forced = seen["forced"]
    assert {k: (r.state, r.attempt, r.errors) for k, r in forced.items()} == {
        "stuck-a": (S.SCHEDULED, 0, ()),
        "stuck-b": (S.SCHEDULED, 0, ()),
        "polite": (S.SCHEDULED, 0, ()),
    }
    assert ended_by_then == {}  # they were still running when handed back
    assert set(ctl.ended) == {"stuck-a", "stuck-b"}
    # The client can only end once the stuck works do (Trio waits for them);
    # their late success must not overwrite the hand-back.
    assert stopped_after == pytest.approx(STUBBORN_FOR)
    after = await _rows(store)
    assert {k: (r.state, r.attempt, r.synced_at) for k, r in after.items()} == {
        "stuck-a": (S.SCHEDULED, 0, None),
        "stuck-b": (S.SCHEDULED, 0, None),
        "polite": (S.SCHEDULED, 0, None),
    }
    waiting = [r.getMessage() for r in caplog.records if "ignore cancellation" in r.getMessage()]
    assert len(waiting) == 1, caplog.text
    assert "job 'stuck-a'" in waiting[0]
    assert "job 'stuck-b'" in waiting[0]
    assert "polite" not in waiting[0]


async def test_forced_stop_hands_back_rows_no_worker_had_taken(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # The stop begins while a claim's rows are still being passed to newly
    # started workers; once stopping, no more workers start, and the ones
    # running will not come back for the rest.
    ctl = Stubborn()
    controllers = delta.Controllers()
    delta.add_controller(controllers, ctl)
    config = delta.Config(
        random=random.Random(1), client_id="c1", inform_interval=-1, shutdown_grace=GRACE
    )
    # Enough rows that workers (a few started per scheduler pass) have not
    # reached them all when the stop begins.
    namespaces = {"default": delta.NamespaceConfig(max_workers=200)}
    store = MemoryStore(anchor=DEFAULT_ANCHOR)
    keys = [f"stuck-{i}" for i in range(200)]
    seen: dict[str, ResourceRow[object]] = {}

    async def look_while_stopping(stop_began: float) -> None:
        await trio.sleep_until(stop_began + GRACE + CANCEL_WAIT + 0.01)
        seen.update(await _rows(store))

    async with (
        trio.open_nursery() as nursery,
        open_test_client(controllers, namespaces=namespaces, config=config, store=store) as t,
    ):
        async with t.client.transaction() as tx:  # one claim for all of them
            for key in keys:
                await t.client.inform_tx(tx, Job(key))
        while t.client.stats.claimed < len(keys):
            await trio.lowlevel.checkpoint()
        nursery.start_soon(look_while_stopping, trio.current_time())

    assert len(ctl.started) < len(keys)  # some rows never reached a worker
    assert {k: (r.state, r.attempt) for k, r in seen.items()} == dict.fromkeys(
        keys, (S.SCHEDULED, 0)
    )
