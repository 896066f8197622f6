"""Both stores agree on an upsert that claims what it writes (``claim_by``,
the single inform of a client with a worker free): a row the write leaves
scheduled and due comes back pending, attempt 1, attempted by the client,
as a claim would make it; a row not due yet, one already pending (another
client works it) and an unchanged one stay as they are; and the claimed
row's outcome applies as any claimed row's."""

from __future__ import annotations

from typing import Any

from trio_delta._objects import PreparedObject, prepare_object
from trio_delta._store.params import OutcomeKind, UpsertParams
from trio_delta._store.port import Store
from trio_delta._types import InformOpts, ResourceRow

from .test_store_conformance import CLIENT, Item, S, at, claim, claim_one, complete, get, outcome

OTHER = "client-b"


def item(key: str, value: int = 0, **opts: Any) -> PreparedObject:
    return prepare_object(Item(key, value), InformOpts(**opts), default_max_attempts=5)


async def write_claiming(store: Store, obj: PreparedObject, seconds: float) -> ResourceRow[Any]:
    (result,) = await store.queue.upsert([obj], UpsertParams(at(seconds), claim_by=CLIENT))
    return result.resource


async def test_a_new_due_row_comes_back_claimed(store: Store) -> None:
    row = await write_claiming(store, item("a"), 1)
    assert (row.state, row.attempt, row.attempted_by, row.attempted_at) == (
        S.PENDING,
        1,
        CLIENT,
        at(1),
    )
    stored = await get(store, "a")
    assert (stored.state, stored.attempt, stored.attempted_by) == (S.PENDING, 1, CLIENT)
    assert await claim(store, at(2)) == []  # nobody else claims it again


async def test_a_changed_synced_row_is_claimed_with_attempts_reset(store: Store) -> None:
    await write_claiming(store, item("a"), 0)
    first = await get(store, "a")
    await complete(store, [outcome(first, OutcomeKind.SYNCED)], now=at(1), client_id=CLIENT)
    again = await write_claiming(store, item("a", 2), 5)
    assert (again.state, again.attempt, again.attempted_at) == (S.PENDING, 1, at(5))
    assert again.object["value"] == 2


async def test_a_future_run_at_is_written_scheduled(store: Store) -> None:
    row = await write_claiming(store, item("later", run_at=at(60)), 1)
    assert (row.state, row.attempt, row.attempted_by) == (S.SCHEDULED, 0, None)
    assert (await claim_one(store, at(60))).object_id == "later"


async def test_a_pending_row_stays_with_the_client_working_it(store: Store) -> None:
    await store.queue.upsert([item("a")], UpsertParams(at(0)))
    theirs = await claim_one(store, at(1), client_id=OTHER)
    row = await write_claiming(store, item("a", 2), 2)
    assert (row.state, row.attempt, row.attempted_by, row.attempted_at) == (
        S.PENDING,
        theirs.attempt,
        OTHER,
        at(1),
    )


async def test_a_row_pending_with_the_same_client_id_stays_as_it_was(store: Store) -> None:
    # Left by an earlier process with the same id (or a claim whose reply
    # was lost): the write is not its claim, and says so by the times.
    await store.queue.upsert([item("a")], UpsertParams(at(0)))
    earlier = await claim_one(store, at(1))
    row = await write_claiming(store, item("a", 2), 2)
    assert (row.state, row.attempt, row.attempted_by, row.attempted_at) == (
        S.PENDING,
        earlier.attempt,
        CLIENT,
        at(1),
    )


async def test_an_unchanged_object_is_not_claimed(store: Store) -> None:
    await store.queue.upsert([item("a")], UpsertParams(at(0)))
    (result,) = await store.queue.upsert([item("a")], UpsertParams(at(1), claim_by=CLIENT))
    assert not result.changed
    assert (result.resource.state, result.resource.attempt) == (S.SCHEDULED, 0)
    assert (await claim_one(store, at(2))).attempt == 1


async def test_the_claimed_rows_outcome_applies(store: Store) -> None:
    row = await write_claiming(store, item("a"), 1)
    (applied,) = await complete(
        store, [outcome(row, OutcomeKind.SYNCED)], now=at(2), client_id=CLIENT
    )
    assert applied.state is S.SYNCED
    assert (await get(store, "a")).state is S.SYNCED


async def test_without_claim_by_a_write_schedules(store: Store) -> None:
    (result,) = await store.queue.upsert([item("a")], UpsertParams(at(1)))
    assert (result.resource.state, result.resource.attempted_by) == (S.SCHEDULED, None)
