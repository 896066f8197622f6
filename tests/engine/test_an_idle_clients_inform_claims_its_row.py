"""A single inform made while its client is idle claims the row in the same
write (``Config.claim_on_inform``): the call hands back the row ``pending``,
attempt 1, and its work starts with no claim of the fetcher's. Whenever a
claim would be held back (work in flight, a pause, a cluster-wide bound)
or the client says no, the row is left ``scheduled`` as before; and however
informs and works interleave, no version is worked twice or at once."""

from __future__ import annotations

from datetime import timedelta

import pytest
import trio
import trio.testing

import trio_delta as delta
from trio_delta._objects import prepare_object
from trio_delta._store.params import ClaimRequest, UpsertParams
from trio_delta.testing import (
    DEFAULT_ANCHOR,
    MemoryStore,
    open_test_client,
    seed_trio_scheduler,
)

from ..models import Note, NoteController, controllers_for
from .test_pausing_and_cancelling_take_effect_at_once import Gauge, Scarce

S = delta.ResourceState


class Gated(delta.Controller[Note]):
    """Holds each work until ``gate`` opens; records overlap per key."""

    def __init__(self) -> None:
        self.gate = trio.Event()
        self.worked: list[tuple[str, str, int]] = []
        self.running: set[str] = set()
        self.overlapped = False

    async def work(self, resource: delta.Resource[Note]) -> None:
        key = resource.object.key
        self.overlapped |= key in self.running
        self.running.add(key)
        try:
            self.worked.append((key, resource.object.text, resource.attempt))
            await self.gate.wait()
        finally:
            self.running.discard(key)


async def test_an_idle_clients_inform_comes_back_claimed_and_is_worked_once(
    autojump_clock: trio.testing.MockClock,
) -> None:
    notes = NoteController()
    async with open_test_client(controllers_for(notes)) as t:
        await t.run_until_idle()
        claims_before = t.client.stats.claimed
        result = await t.client.inform(Note("a", "x"))
        row = result.resource
        assert (row.state, row.attempt, row.attempted_by) == (S.PENDING, 1, "test-client")
        assert row.object == Note("a", "x")  # the caller's object, as informed
        await t.run_until_idle()
        assert notes.worked == ["a"]
        assert t.client.stats.claimed == claims_before + 1
        assert await t.state_of("note", "a") is S.SYNCED


async def test_work_in_flight_leaves_the_next_inform_scheduled(
    autojump_clock: trio.testing.MockClock,
) -> None:
    gated = Gated()
    async with open_test_client(controllers_for(gated)) as t:
        first = await t.client.inform(Note("a"))
        assert first.resource.state is S.PENDING
        await t.run_until(lambda: bool(gated.worked))
        await trio.testing.wait_all_tasks_blocked()  # no claim in flight either
        second = await t.client.inform(Note("b"))
        assert second.resource.state is S.SCHEDULED
        gated.gate.set()
        await t.run_until_idle()
    assert sorted(k for k, _, _ in gated.worked) == ["a", "b"]


async def test_a_paused_kind_is_left_scheduled(autojump_clock: trio.testing.MockClock) -> None:
    notes = NoteController()
    async with open_test_client(controllers_for(notes)) as t:
        await t.client.pause("note")
        await t.run_until_idle()
        result = await t.client.inform(Note("a"))
        assert result.resource.state is S.SCHEDULED
        await trio.sleep(5)  # (run_until_idle would wait for the paused row)
        assert notes.worked == []
        await t.client.resume("note")
        await t.run_until_idle()
        assert notes.worked == ["a"]


async def test_a_kind_bounded_across_clients_is_left_scheduled(
    autojump_clock: trio.testing.MockClock,
) -> None:
    gauge = Gauge()  # its kind, "scarce", has a cap across clients
    async with open_test_client(controllers_for(gauge)) as t:
        await t.run_until_idle()
        result = await t.client.inform(Scarce("a"))
        assert result.resource.state is S.SCHEDULED
        await t.run_until_idle()
        assert gauge.done == ["a"]


async def test_claim_on_inform_off_leaves_every_inform_scheduled(
    autojump_clock: trio.testing.MockClock,
) -> None:
    notes = NoteController()
    config = delta.Config(claim_on_inform=False, client_id="test-client")
    async with open_test_client(controllers_for(notes), config=config) as t:
        await t.run_until_idle()
        result = await t.client.inform(Note("a"))
        assert (result.resource.state, result.resource.attempt) == (S.SCHEDULED, 0)
        await t.run_until_idle()
        assert notes.worked == ["a"]


@pytest.mark.parametrize("seed", range(12))
async def test_rapid_informs_of_one_object_work_each_version_at_most_once_and_never_at_once(
    autojump_clock: trio.testing.MockClock, seed: int
) -> None:
    # Which of the ready tasks runs first decides which informs find the
    # client idle: seeded, and over several seeds, so that an outcome in
    # flight between a worker and the outcome writer is met too.
    seed_trio_scheduler(seed)
    gated = Gated()
    gated.gate.set()
    async with open_test_client(controllers_for(gated)) as t:
        await t.run_until_idle()
        for n in range(30):
            await t.client.inform(Note("a", str(n)))
            # Every interleaving of informs with claims, works and outcome
            # writes that a few scheduler passes give (none at some steps).
            for _ in range(n % 4):
                await trio.lowlevel.checkpoint()
        await t.run_until_idle()
        assert not gated.overlapped
        texts = [text for _, text, _ in gated.worked]
        assert texts[-1] == "29"  # the last version was worked
        assert len(texts) == len(set(texts))  # no version twice
        assert all(attempt == 1 for _, _, attempt in gated.worked)
        assert await t.state_of("note", "a") is S.SYNCED


async def test_a_row_left_pending_under_our_id_is_not_taken_for_this_writes_claim(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # An earlier process with the same client_id claimed "a" and vanished.
    store = MemoryStore(anchor=DEFAULT_ANCHOR)
    before = DEFAULT_ANCHOR - timedelta(seconds=30)
    leftover = prepare_object(Note("a", "old"), None, default_max_attempts=5)
    await store.queue.upsert([leftover], UpsertParams(before))
    request = ClaimRequest("default", 1, {"note": None})
    await store.queue.claim([request], now=before, client_id="test-client")
    notes = NoteController()
    async with open_test_client(controllers_for(notes), store=store) as t:
        await trio.testing.wait_all_tasks_blocked()
        result = await t.client.inform(Note("a", "new"))
        assert (result.resource.state, result.resource.attempted_at) == (S.PENDING, before)
        await trio.sleep(1)
        assert notes.worked == []  # its worker, if any, is the rescuer's to find
        # The slot it took was given back: the next inform is claimed.
        assert (await t.client.inform(Note("b"))).resource.state is S.PENDING
        await trio.testing.wait_all_tasks_blocked()
        assert notes.worked == ["b"]


async def test_a_stop_hands_an_inform_claimed_row_to_a_worker_first(
    autojump_clock: trio.testing.MockClock,
) -> None:
    notes = NoteController()
    async with open_test_client(controllers_for(notes)) as t:
        await t.run_until_idle()
        result = await t.client.inform(Note("last"))
        assert result.resource.state is S.PENDING
    # The client closed at once: the row claimed by the inform was worked
    # (or handed back), never left pending for the rescuer.
    row = await t.store.insights.get_resource("note", "last")
    assert row is not None
    assert row.state in (S.SYNCED, S.SCHEDULED)
