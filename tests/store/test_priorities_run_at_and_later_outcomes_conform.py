"""Both stores agree on what is new in version 2 of the schema: claims take
the highest priority first, a future ``run_at`` holds a resource back, a
changed object keeps its priority unless a new one is given, and the
requeue and snooze outcomes make a row due again later (a requeue synced,
attempts reset; a snooze with its attempt given back and counted)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from trio_delta._objects import PreparedObject, prepare_object
from trio_delta._store.params import OutcomeKind, ResourceFilter
from trio_delta._store.port import Store
from trio_delta._types import InformOpts

from .test_store_conformance import (
    CLIENT,
    Item,
    S,
    at,
    claim,
    claim_one,
    complete,
    error,
    get,
    outcome,
    upsert,
    upsert_one,
)


def item(key: str, value: int = 0, **opts: Any) -> PreparedObject:
    return prepare_object(Item(key, value), InformOpts(**opts), default_max_attempts=5)


async def test_claims_take_the_highest_priority_first(store: Store) -> None:
    await upsert(store, [item(f"low{i}") for i in range(5)], now=at(0))
    await upsert(store, [item("high", priority=9), item("mid", priority=3)], now=at(1))
    await upsert(store, [item("below", priority=-1)], now=at(0))
    claimed = await claim(store, at(2), limit=3)
    assert [r.object_id for r in claimed] == ["high", "mid", "low0"]
    assert [r.priority for r in claimed] == [9, 3, 0]
    rest = await claim(store, at(2), limit=10)
    assert [r.object_id for r in rest] == ["low1", "low2", "low3", "low4", "below"]


async def test_a_future_run_at_holds_the_resource_back(store: Store) -> None:
    row = await upsert_one(store, item("later", run_at=at(60)), at(0))
    assert row.scheduled_at == at(60)
    assert await claim(store, at(59.9)) == []
    assert (await claim_one(store, at(60))).object_id == "later"


async def test_a_changed_object_keeps_its_priority_unless_given_one(store: Store) -> None:
    await upsert_one(store, item("a", 1, priority=7), at(0))
    kept = await upsert_one(store, item("a", 2), at(1))
    assert (kept.priority, kept.object["value"]) == (7, 2)
    changed = await upsert_one(store, item("a", 3, priority=-2), at(2))
    assert changed.priority == -2
    # In one call, objects with and without a priority each get their rule.
    await upsert_one(store, item("b", 1, priority=4), at(3))
    results = await upsert(store, [item("a", 4), item("b", 2, priority=1)], now=at(4))
    assert [r.resource.priority for r in results] == [-2, 1]
    assert (await get(store, "a")).priority == -2


async def test_requeue_syncs_now_and_is_due_again_later(store: Store) -> None:
    await upsert_one(store, item("r"), at(0))
    first = await claim_one(store, at(1))
    await complete(
        store,
        [outcome(first, OutcomeKind.FAILED, error=error(first, at(1)), retry_at=at(2))],
        now=at(1),
        client_id=CLIENT,
    )
    second = await claim_one(store, at(2))
    assert second.attempt == 2
    (applied,) = await complete(
        store, [outcome(second, OutcomeKind.REQUEUE, retry_at=at(32))], now=at(2), client_id=CLIENT
    )
    assert (applied.state, applied.attempt, applied.scheduled_at) == (S.SCHEDULED, 0, at(32))
    assert applied.synced_at == at(2)
    row = await get(store, "r")
    assert (row.state, row.attempt, row.synced_at, row.snoozes) == (S.SCHEDULED, 0, at(2), 0)
    assert len(row.errors) == 1  # the earlier failure stays on record
    assert await claim(store, at(31.9)) == []
    assert (await claim_one(store, at(32))).attempt == 1


async def test_snooze_gives_the_attempt_back_and_counts(store: Store) -> None:
    await upsert_one(store, item("s"), at(0))
    for n in range(1, 4):
        claimed = await claim_one(store, at(10 * n))
        assert claimed.attempt == 1
        (applied,) = await complete(
            store,
            [outcome(claimed, OutcomeKind.SNOOZE, retry_at=at(10 * n + 5))],
            now=at(10 * n),
            client_id=CLIENT,
        )
        assert (applied.state, applied.attempt) == (S.SCHEDULED, 0)
        row = await get(store, "s")
        assert (row.snoozes, row.errors, row.synced_at) == (n, (), None)
        assert row.scheduled_at == at(10 * n + 5)
        assert await claim(store, at(10 * n + 4.9)) == []


async def test_an_object_changed_meanwhile_outranks_a_requeue(store: Store) -> None:
    await upsert_one(store, item("c", 1), at(0))
    claimed = await claim_one(store, at(1))
    await upsert_one(store, item("c", 2), at(2))  # changed while worked
    (applied,) = await complete(
        store,
        [outcome(claimed, OutcomeKind.REQUEUE, retry_at=at(100))],
        now=at(3),
        client_id=CLIENT,
    )
    # The new version is due now; the requeue of the old one is moot.
    assert (applied.state, applied.scheduled_at, applied.synced_at) == (S.SCHEDULED, at(3), None)
    assert (await claim_one(store, at(3))).object["value"] == 2


async def test_due_times_of_later_outcomes_are_exact(store: Store) -> None:
    await upsert_one(store, item("e"), at(0))
    claimed = await claim_one(store, at(0))
    due = at(0) + timedelta(seconds=1.25)
    await complete(
        store, [outcome(claimed, OutcomeKind.SNOOZE, retry_at=due)], now=at(0), client_id=CLIENT
    )
    assert (await get(store, "e")).scheduled_at == due


async def test_status_counts_waiting_and_snoozed_resources(store: Store) -> None:
    await upsert(store, [item("now"), item("later", run_at=at(50))], now=at(0))
    snoozing = await claim_one(store, at(0))
    await complete(
        store, [outcome(snoozing, OutcomeKind.SNOOZE, retry_at=at(30))], now=at(1), client_id=CLIENT
    )
    (counts,) = await store.insights.count_states(ResourceFilter(), at(2))
    assert (counts.state, counts.count, counts.waiting, counts.snoozed) == (S.SCHEDULED, 2, 2, 1)
    (later,) = await store.insights.count_states(ResourceFilter(), at(40))
    assert (later.waiting, later.snoozed) == (1, 0)  # the snoozed one is due again


async def test_a_snooze_of_an_object_changed_meanwhile_starts_its_attempts_over(
    store: Store,
) -> None:
    await upsert_one(store, item("z", 1), at(0))
    first = await claim_one(store, at(0))
    await complete(
        store,
        [outcome(first, OutcomeKind.FAILED, error=error(first, at(0)), retry_at=at(1))],
        now=at(0),
        client_id=CLIENT,
    )
    claimed = await claim_one(store, at(1))
    assert claimed.attempt == 2
    await upsert_one(store, item("z", 2), at(2))  # changed while worked
    (applied,) = await complete(
        store, [outcome(claimed, OutcomeKind.SNOOZE, retry_at=at(60))], now=at(3), client_id=CLIENT
    )
    # The new version is due now, attempts from 0, and was not snoozed.
    assert (applied.state, applied.attempt, applied.scheduled_at) == (S.SCHEDULED, 0, at(3))
    assert (await get(store, "z")).snoozes == 0
