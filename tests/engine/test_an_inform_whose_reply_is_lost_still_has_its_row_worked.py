"""A single inform that claims its row as it writes (an idle client) may
fail after its write committed: the connection breaks as the reply is due,
and the store says the write may have been applied. The row is then
pending under this client with no worker on it. The client reads it back
before its next claim and works it at once, instead of leaving it to the
rescuer (``work_timeout`` plus ``rescue_after`` later); a write that did
not commit gives its slot back; a read that fails is tried again."""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

import pytest
import trio
import trio.testing

import trio_delta as delta
from trio_delta import StoreError
from trio_delta._engine.clock import Clock
from trio_delta._engine.runtime import FETCH_STOP_TIMEOUT
from trio_delta._engine.unsure import UnsureClaim, UnsureClaims
from trio_delta._objects import PreparedObject
from trio_delta._store.memory.insights import MemoryInsights
from trio_delta._store.memory.queue import MemoryQueue
from trio_delta._store.params import ClaimRequest, UpsertParams
from trio_delta._store.port import AppConnection, StoreTransaction
from trio_delta.testing import DEFAULT_ANCHOR, MemoryStore, open_test_client

from ..models import Note, NoteController, controllers_for
from .test_an_idle_clients_inform_claims_its_row import Gated

S = delta.ResourceState
LOST = "inform failed: the connection was lost as the reply was due"


class LosingQueue(MemoryQueue):
    """Its next claiming upsert fails with a maybe-applied error, after
    writing (``applied``) or before."""

    applied = True
    leave_scheduled = False
    lose_next = False
    claims = 0

    async def claim(
        self, requests: Sequence[ClaimRequest], *, now: datetime, client_id: str
    ) -> list[delta.Resource[Any]]:
        self.claims += 1
        return await super().claim(requests, now=now, client_id=client_id)

    async def upsert(
        self,
        items: Sequence[PreparedObject],
        params: UpsertParams,
        tx: StoreTransaction | AppConnection | None = None,
    ) -> list[delta.InformResult[Any]]:
        if not (self.lose_next and params.claim_by is not None):
            return await super().upsert(items, params, tx)
        self.lose_next = False
        if self.applied:
            await super().upsert(items, params, tx)
        elif self.leave_scheduled:
            # Not applied, but the row is there to claim (another writer's).
            await super().upsert(items, replace(params, claim_by=None), tx)
        else:
            await trio.lowlevel.checkpoint()
        raise StoreError(LOST, maybe_applied=True)


class FailingReads(MemoryInsights):
    """Its next ``failures`` reads of one resource fail; each read answers
    after ``delay`` seconds."""

    failures = 0
    reads = 0
    delay = 0.0

    async def get_resource(self, kind: str, object_id: str) -> delta.ResourceRow[Any] | None:
        self.reads += 1
        await trio.sleep(self.delay)
        if self.failures:
            self.failures -= 1
            await trio.lowlevel.checkpoint()
            raise StoreError("reading a resource failed: the database is unreachable")
        return await super().get_resource(kind, object_id)


class Losing(MemoryStore):
    def __init__(
        self, *, applied: bool = True, leave_scheduled: bool = False, read_failures: int = 0
    ) -> None:
        super().__init__()
        self.queue = LosingQueue(self.tables)
        self.queue.applied = applied
        self.queue.leave_scheduled = leave_scheduled
        self.insights = FailingReads(self.tables)
        self.insights.failures = read_failures

    def lose_next_reply(self) -> None:
        self.queue.lose_next = True


def _given_up(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    """The warnings of rows left to the rescuer."""
    return [r for r in caplog.records if "could not tell whether" in r.getMessage()]


async def _lost_inform(t: Any, store: Losing, note: Note) -> None:
    await t.run_until_idle()
    store.lose_next_reply()
    with pytest.raises(StoreError, match="connection was lost"):
        await t.client.inform(note)


async def test_a_committed_claim_whose_reply_was_lost_is_worked_at_once(
    autojump_clock: trio.testing.MockClock,
) -> None:
    notes = NoteController()
    store = Losing()
    async with open_test_client(controllers_for(notes), store=store) as t:
        await _lost_inform(t, store, Note("a"))
        row = await t.client.get_resource("note", "a")
        assert row is not None
        assert (row.state, row.attempt, row.attempted_by) == (S.PENDING, 1, "test-client")
        lost_at = trio.current_time()
        await t.run_until_idle()
        assert notes.worked == ["a"]
        assert await t.state_of("note", "a") is S.SYNCED
        # At once: not after the rescuer's work_timeout (60 s) and more.
        assert trio.current_time() - lost_at < 1.0
        # The slot came back: the next inform is claimed and worked too.
        result = await t.client.inform(Note("b"))
        assert result.resource.state is S.PENDING
        await t.run_until_idle()
    assert notes.worked == ["a", "b"]


async def test_a_write_that_did_not_commit_gives_its_slot_back(
    autojump_clock: trio.testing.MockClock,
) -> None:
    notes = NoteController()
    store = Losing(applied=False)
    async with open_test_client(controllers_for(notes), store=store) as t:
        await _lost_inform(t, store, Note("a"))
        await t.run_until_idle()
        assert store.insights.reads == 1  # the fetcher's read
        assert await t.state_of("note", "a") is None
        result = await t.client.inform(Note("a"))  # the caller tries again
        assert result.resource.state is S.PENDING
        await t.run_until_idle()
    assert notes.worked == ["a"]


async def test_no_claim_at_the_writes_instant_is_mistaken_for_it(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # The write did not apply, but the row is there, scheduled; the first
    # read back fails. A claim of ours at the write's very instant would
    # look like the write's own claim to the next read, and the row, still
    # being worked, would go to a worker twice: claims wait until the
    # clock has moved on.
    gated = Gated()
    store = Losing(applied=False, leave_scheduled=True, read_failures=1)
    async with open_test_client(controllers_for(gated), store=store) as t:
        await _lost_inform(t, store, Note("a"))
        await t.run_until(lambda: store.insights.reads == 2)  # the retry
        await trio.sleep(1)
        gated.gate.set()
        await t.run_until_idle()
        assert await t.state_of("note", "a") is S.SYNCED
    assert [key for key, _, _ in gated.worked] == ["a"]
    assert not gated.overlapped


async def test_a_failed_read_is_tried_again_and_the_row_worked_once(
    autojump_clock: trio.testing.MockClock,
) -> None:
    notes = NoteController()
    store = Losing(read_failures=3)
    async with open_test_client(controllers_for(notes), store=store) as t:
        await _lost_inform(t, store, Note("a"))
        await t.run_until_idle()
        assert store.insights.reads == 4
        assert notes.worked == ["a"]
        # Nothing else comes of it: no second work, no slot held.
        await t.client.inform(Note("b"))
        await t.run_until_idle()
    assert notes.worked == ["a", "b"]


async def test_a_stop_reads_the_row_once_more_and_works_it(
    autojump_clock: trio.testing.MockClock,
) -> None:
    notes = NoteController()
    store = Losing(read_failures=1_000)
    async with open_test_client(controllers_for(notes), store=store) as t:
        await _lost_inform(t, store, Note("a"))
        await trio.testing.wait_all_tasks_blocked()
        reads = store.insights.reads
        assert reads >= 1  # failed, and the next read is a while off
        store.insights.failures = 0
        # The client stops now: the stop's own read finds the row.
    assert store.insights.reads == reads + 1
    assert notes.worked == ["a"]
    row = await store.insights.get_resource("note", "a")
    assert row is not None
    assert row.state is S.SYNCED


async def test_a_failing_read_holds_back_no_claim_and_is_given_up_in_time(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    notes = NoteController()
    store = Losing(read_failures=1_000)
    with caplog.at_level(logging.WARNING, logger="trio_delta.fetcher"):
        async with open_test_client(controllers_for(notes), store=store) as t:
            await _lost_inform(t, store, Note("a"))
            lost_at = trio.current_time()
            # The unsure row holds its slot: this inform is left scheduled,
            # and the fetcher claims and works it all the same.
            result = await t.client.inform(Note("b"))
            assert result.resource.state is S.SCHEDULED
            await t.run_until(lambda: notes.worked == ["b"])
            assert trio.current_time() - lost_at < 1.0
            # Half the rescuer's margin (rescue_after 60 s) later: given up.
            with trio.fail_after(120):
                await t.run_until(lambda: bool(_given_up(caplog)))
            assert 30.0 <= trio.current_time() - lost_at <= 40.0
            reads = store.insights.reads
            await trio.sleep(60)
            assert store.insights.reads == reads  # no more reads
    assert notes.worked == ["b"]


async def test_a_stop_that_cannot_read_leaves_the_row_to_the_rescuer(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    notes = NoteController()
    store = Losing(read_failures=1_000)
    with caplog.at_level(logging.WARNING, logger="trio_delta.fetcher"):
        async with open_test_client(controllers_for(notes), store=store) as t:
            await _lost_inform(t, store, Note("a"))
            stop_started = trio.current_time()
    # The stop did not wait out the reads: one last try, bounded.
    assert trio.current_time() - stop_started <= 2.0
    assert notes.worked == []
    (record,) = _given_up(caplog)
    assert getattr(record, "object_id", None) == "a"
    store.insights.failures = 0
    row = await store.insights.get_resource("note", "a")
    assert row is not None
    assert (row.state, row.attempted_by) == (S.PENDING, "test-client")


async def test_a_read_answered_too_late_gives_the_row_up(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    # The read answers 40 s on: past half the rescuer's margin (30 s), a
    # worker starting the row then could still run when the rescuer takes
    # it. The read is cut off at 30 s and the slot given back.
    notes = NoteController()
    store = Losing()
    with caplog.at_level(logging.WARNING, logger="trio_delta.fetcher"):
        async with open_test_client(controllers_for(notes), store=store) as t:
            await t.run_until_idle()
            store.insights.delay = 40.0
            await _lost_inform(t, store, Note("a"))
            lost_at = trio.current_time()
            with trio.fail_after(120):
                await t.run_until(lambda: bool(_given_up(caplog)))
            assert 29.0 <= trio.current_time() - lost_at <= 31.0
            store.insights.delay = 0.0
            await t.client.inform(Note("b"))  # the slot is free again
            await t.run_until(lambda: notes.worked == ["b"])
            # A claim in the meantime could not take "a": it is pending.
            assert await t.state_of("note", "a") is S.PENDING


async def test_claims_go_on_at_their_pace_while_a_read_is_slow(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # While one claim loop waits 10 s for its read, the other must not
    # claim every millisecond.
    notes = NoteController()
    store = Losing()
    async with open_test_client(controllers_for(notes), store=store) as t:
        await t.run_until_idle()
        store.insights.delay = 10.0
        await _lost_inform(t, store, Note("a"))
        claims = store.queue.claims
        await trio.sleep(9.0)
        assert store.queue.claims - claims <= 5
        await t.run_until_idle()
        assert notes.worked == ["a"]


async def test_each_unsure_write_starts_from_the_first_retry_delay(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # One claim given up after many failed reads (the delay grown to 5 s);
    # the next one's failed read is tried again 50 ms later.
    store = Losing(read_failures=1_000)
    clock = Clock(DEFAULT_ANCHOR)
    taken: list[str] = []
    released: list[str] = []
    unsure = UnsureClaims(
        store.insights,
        clock,
        give_up_after=timedelta(seconds=30),
        take=lambda kind, namespace, row, at: taken.append(kind),
        release=lambda namespace, kind: released.append(kind),
    )
    unsure.add(UnsureClaim("note", "default", "a", clock.now()))
    while unsure:
        await unsure.read_when_due()
        await trio.sleep(0.01)
    assert released == ["note"]
    store.insights.failures = 1
    unsure.add(UnsureClaim("note", "default", "b", clock.now()))
    await unsure.read_when_due()  # fails
    assert unsure.retry_at - trio.current_time() == pytest.approx(0.05)


async def test_a_read_that_never_answers_holds_a_stop_no_longer_than_the_fetchers_bound(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    notes = NoteController()
    store = Losing()
    with caplog.at_level(logging.WARNING, logger="trio_delta.fetcher"):
        async with open_test_client(controllers_for(notes), store=store) as t:
            await t.run_until_idle()
            store.insights.delay = math.inf
            await _lost_inform(t, store, Note("a"))
            await trio.testing.wait_all_tasks_blocked()
            stop_started = trio.current_time()
    assert trio.current_time() - stop_started <= FETCH_STOP_TIMEOUT + 1.0
    assert notes.worked == []
    (record,) = _given_up(caplog)
    assert getattr(record, "object_id", None) == "a"
