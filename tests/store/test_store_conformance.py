"""The store's state rules (``trio_delta._store.base``), checked unchanged
against both adapters: Postgres (the reference) and the memory store."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar, cast

import msgspec
import pytest
import trio

import trio_delta as delta
from trio_delta._errors import ConfigError
from trio_delta._objects import PreparedObject, prepare_object
from trio_delta._store.memory import MemoryStore, open_memory_store
from trio_delta._store.params import (
    MAX_ERRORS,
    AppliedOutcome,
    Change,
    ClaimRequest,
    ControllerState,
    InformClaim,
    InformLease,
    InformRunEnd,
    LeaderState,
    Outcome,
    OutcomeKind,
    RescueParams,
    ResourceFilter,
    StaleCheck,
    UpsertParams,
)
from trio_delta._store.port import Store, StoreTransaction
from trio_delta._store.postgres import PostgresStore, open_postgres_store
from trio_delta._types import AttemptError, InformOpts, InformResult, ResourceRow, ResourceState

from .conftest import lock_bounded_store

T0 = datetime(2030, 1, 1, tzinfo=UTC)
CLIENT = "client-a"
S = ResourceState


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


@dataclass
class Item:
    kind: ClassVar[str] = "item"
    key: str
    value: int = 0

    def id(self) -> str:
        return self.key


@dataclass
class Gadget:
    kind: ClassVar[str] = "gadget"
    key: str
    value: int = 0

    def id(self) -> str:
        return self.key


def prep(
    obj: object,
    *,
    namespace: str | None = None,
    metadata: dict[str, Any] | None = None,
    tags: list[str] | None = None,
    max_attempts: int | None = None,
) -> PreparedObject:
    opts = InformOpts(namespace=namespace, metadata=metadata, tags=tags, max_attempts=max_attempts)
    return prepare_object(obj, opts, default_max_attempts=10)


def decoded(rec: ResourceRow[Any]) -> Any:
    return msgspec.json.decode(rec.encoded_object)


def by_value(incoming: PreparedObject, stored: bytes) -> bool:
    """``is_stale``: the stored object has a higher ``value``."""
    return bool(msgspec.json.decode(stored)["value"] > incoming.obj.value)


# -- helpers --------------------------------------------------------------------
# The port's methods that take a params object, called with keywords here so
# each test reads as the rule it checks.


async def upsert(
    store: Store,
    items: list[PreparedObject],
    *,
    now: datetime,
    process_existing: bool = False,
    is_stale: StaleCheck | None = None,
    tx: StoreTransaction | None = None,
) -> list[InformResult[Any]]:
    return await store.queue.upsert(items, UpsertParams(now, process_existing, is_stale), tx)


async def claim_inform(
    store: Store, kind: str, *, now: datetime, client_id: str, lease_until: datetime
) -> InformClaim | None:
    return await store.control.claim_inform(InformLease(kind, client_id, now, lease_until))


async def finish_inform(
    store: Store,
    kind: str,
    *,
    now: datetime,
    client_id: str,
    cursor: datetime | None,
    reschedule: bool,
    next_inform_at: datetime | None,
    requested_at: datetime | None,
    error: str | None,
) -> None:
    await store.control.finish_inform(
        InformRunEnd(kind, client_id, now, cursor, reschedule, next_inform_at, requested_at, error)
    )


async def rescue(
    store: Store, *, now: datetime, stuck_before: datetime, limit: int, error: str
) -> int:
    return await store.control.rescue(RescueParams(now, stuck_before, limit, error))


async def invalidate(
    store: Store, kind: str, object_id: str, *, now: datetime
) -> ResourceRow[Any] | None:
    rows = await store.insights.change(
        Change.INVALIDATE, ResourceFilter(kind=kind, object_ids=(object_id,)), now=now
    )
    return rows[0] if rows else None


async def upsert_one(
    store: Store, item: PreparedObject, now: datetime, **kw: Any
) -> ResourceRow[Any]:
    (result,) = await upsert(store, [item], now=now, **kw)
    return result.resource


async def claim(
    store: Store,
    now: datetime,
    *,
    kinds: dict[str, int | None] | None = None,
    namespace: str = "default",
    limit: int = 100,
    client_id: str = CLIENT,
) -> list[ResourceRow[Any]]:
    request = ClaimRequest(namespace, limit, kinds if kinds is not None else {"item": None})
    return await store.queue.claim([request], now=now, client_id=client_id)


async def claim_one(store: Store, now: datetime, **kw: Any) -> ResourceRow[Any]:
    (rec,) = await claim(store, now, **kw)
    return rec


def outcome(rec: ResourceRow[Any], kind: OutcomeKind, **kw: Any) -> Outcome:
    return Outcome(id=rec.id, attempt=rec.attempt, hash=rec.hash, kind=kind, **kw)


def error(rec: ResourceRow[Any], now: datetime, text: str = "boom") -> AttemptError:
    return AttemptError(at=now, attempt=rec.attempt, error=text, trace="Traceback ...")


async def complete(
    store: Store, outcomes: list[Outcome], *, now: datetime, client_id: str
) -> list[AppliedOutcome]:
    """The outcomes that applied, where no row is held by a transaction."""
    done = await store.queue.complete(outcomes, now=now, client_id=client_id)
    assert done.locked == []
    return done.applied


async def fail(store: Store, rec: ResourceRow[Any], now: datetime, retry_at: datetime) -> None:
    (applied,) = await complete(
        store,
        [outcome(rec, OutcomeKind.FAILED, error=error(rec, now), retry_at=retry_at)],
        now=now,
        client_id=CLIENT,
    )
    assert applied.state is S.FAILED


async def controller(store: Store, kind: str = "item") -> ControllerState:
    ctl = await store.control.get_controller(kind)
    assert ctl is not None
    return ctl


async def get(store: Store, key: str, kind: str = "item") -> ResourceRow[Any]:
    rec = await store.insights.get_resource(kind, key)
    assert rec is not None
    return rec


async def synced_row(store: Store, item: PreparedObject) -> ResourceRow[Any]:
    """``item`` stored, worked once and synced at t=2."""
    await upsert(store, [item], now=at(0))
    rec = await claim_one(store, at(1), namespace=item.namespace, kinds={item.kind: None})
    await complete(store, [outcome(rec, OutcomeKind.SYNCED)], now=at(2), client_id=CLIENT)
    return await get(store, rec.object_id, rec.kind)


# -- upsert ---------------------------------------------------------------------


async def test_new_row_is_scheduled_at_now_with_attempt_zero(store: Store) -> None:
    item = prep(Item("a", 1), metadata={"m": 1}, tags=["red"], max_attempts=3)
    (result,) = await upsert(store, [item], now=at(5))
    rec = result.resource
    assert (result.already_exists, result.changed) == (False, True)
    assert (rec.id, rec.kind, rec.object_id, rec.namespace) == (1, "item", "a", "default")
    assert (rec.state, rec.attempt, rec.max_attempts, rec.errors) == (S.SCHEDULED, 0, 3, ())
    assert rec.created_at == rec.updated_at == rec.scheduled_at == at(5)
    assert (rec.attempted_at, rec.attempted_by, rec.synced_at) == (None, None, None)
    assert decoded(rec) == {"key": "a", "value": 1}
    assert (rec.hash, dict(rec.metadata), rec.tags) == (item.hash, {"m": 1}, ("red",))
    assert await get(store, "a") == rec


async def test_ids_are_sequential_from_one(store: Store) -> None:
    results = await upsert(store, [prep(Item(k)) for k in "abc"], now=at(0))
    assert [r.resource.id for r in results] == [1, 2, 3]
    assert [r.resource.object_id for r in results] == ["a", "b", "c"]


async def test_every_proposed_row_consumes_an_id_like_a_postgres_identity(store: Store) -> None:
    await upsert(store, [prep(Item("a"))], now=at(0))
    await upsert(store, [prep(Item("a"))], now=at(1))  # unchanged: no write, id 2 used up
    rec = await upsert_one(store, prep(Item("b")), at(2))
    assert rec.id == 3


async def test_empty_batch_does_nothing(store: Store) -> None:
    assert await upsert(store, [], now=at(0)) == []
    assert await store.insights.list_resources(ResourceFilter()) == []


async def test_duplicate_items_in_a_batch_last_wins_in_first_position(store: Store) -> None:
    results = await upsert(
        store, [prep(Item("a", 1)), prep(Item("b")), prep(Item("a", 2))], now=at(0)
    )
    assert [(r.resource.id, r.resource.object_id) for r in results] == [(1, "a"), (2, "b")]
    assert decoded(results[0].resource)["value"] == 2
    assert decoded(await get(store, "a"))["value"] == 2


async def test_quiet_upsert_writes_what_upsert_writes(store: Store) -> None:
    await store.queue.upsert_quiet([prep(Item("a", 1)), prep(Item("b", 1))], UpsertParams(at(0)))
    a = await get(store, "a")
    assert (a.state, a.attempt, a.scheduled_at) == (S.SCHEDULED, 0, at(0))
    assert decoded(a) == {"key": "a", "value": 1}
    # changed: rewritten and rescheduled; stale (per compare): left alone
    await store.queue.upsert_quiet(
        [prep(Item("a", 2)), prep(Item("b", 0))], UpsertParams(at(5), is_stale=by_value)
    )
    a, b = await get(store, "a"), await get(store, "b")
    assert (decoded(a)["value"], a.scheduled_at) == (2, at(5))
    assert (decoded(b)["value"], b.scheduled_at) == (1, at(0))


async def test_same_object_again_leaves_row_untouched(store: Store) -> None:
    before = await synced_row(store, prep(Item("a", 1)))
    (result,) = await upsert(store, [prep(Item("a", 1))], now=at(10))
    assert (result.already_exists, result.changed) == (True, False)
    assert result.resource == before
    assert await get(store, "a") == before


async def test_same_object_with_new_options_is_not_written(store: Store) -> None:
    before = await synced_row(store, prep(Item("a", 1)))
    item = prep(Item("a", 1), namespace="other", metadata={"m": 2}, tags=["blue"])
    (result,) = await upsert(store, [item], now=at(10))
    assert not result.changed
    assert await get(store, "a") == before


async def test_changed_object_reschedules_row_and_clears_attempts(store: Store) -> None:
    await upsert(store, [prep(Item("a", 1))], now=at(0))
    rec = await claim_one(store, at(1))
    await fail(store, rec, at(2), retry_at=at(100))
    item = prep(Item("a", 2), namespace="other", metadata={"m": 2}, tags=["blue"], max_attempts=4)
    (result,) = await upsert(store, [item], now=at(10))
    new = result.resource
    assert (result.already_exists, result.changed) == (True, True)
    assert (new.id, new.state, new.attempt, new.errors) == (rec.id, S.SCHEDULED, 0, ())
    assert (new.scheduled_at, new.updated_at, new.created_at) == (at(10), at(10), at(0))
    assert decoded(new) == {"key": "a", "value": 2}
    assert (new.namespace, dict(new.metadata), new.tags, new.max_attempts) == (
        "other",
        {"m": 2},
        ("blue",),
        4,
    )
    assert (new.hash, new.attempted_at, new.attempted_by) == (item.hash, at(1), CLIENT)


async def test_changed_object_while_pending_keeps_the_claim(store: Store) -> None:
    await upsert(store, [prep(Item("a", 1))], now=at(0))
    claimed = await claim_one(store, at(1))
    item = prep(Item("a", 2), metadata={"m": 2})
    (result,) = await upsert(store, [item], now=at(2))
    rec = result.resource
    assert result.changed
    assert (rec.state, rec.attempt, rec.scheduled_at) == (S.PENDING, 1, at(0))
    assert (rec.attempted_by, rec.attempted_at, rec.updated_at) == (CLIENT, at(1), at(2))
    assert (rec.hash, decoded(rec), dict(rec.metadata)) == (
        item.hash,
        {"key": "a", "value": 2},
        {"m": 2},
    )
    assert claimed.hash != rec.hash


async def test_process_existing_reschedules_an_unchanged_row(store: Store) -> None:
    await upsert(store, [prep(Item("a", 1))], now=at(0))
    rec = await claim_one(store, at(1))
    await fail(store, rec, at(2), retry_at=at(3))
    rec = await claim_one(store, at(3))
    await complete(store, [outcome(rec, OutcomeKind.SYNCED)], now=at(4), client_id=CLIENT)
    (result,) = await upsert(store, [prep(Item("a", 1))], now=at(10), process_existing=True)
    new = result.resource
    assert (result.already_exists, result.changed) == (True, True)
    assert (new.state, new.attempt, new.errors, new.scheduled_at) == (S.SCHEDULED, 0, (), at(10))
    assert new.synced_at == at(4)


async def test_process_existing_leaves_a_pending_row_alone(store: Store) -> None:
    await upsert(store, [prep(Item("a", 1))], now=at(0))
    claimed = await claim_one(store, at(1))
    (result,) = await upsert(store, [prep(Item("a", 1))], now=at(2), process_existing=True)
    assert not result.changed
    assert result.resource == claimed


async def test_stale_object_is_ignored(store: Store) -> None:
    before = await synced_row(store, prep(Item("a", 5)))
    calls: list[tuple[int, Any]] = []

    def is_stale(incoming: PreparedObject, stored: bytes) -> bool:
        calls.append((incoming.obj.value, msgspec.json.decode(stored)))
        return by_value(incoming, stored)

    (result,) = await upsert(store, [prep(Item("a", 3))], now=at(10), is_stale=is_stale)
    assert (result.already_exists, result.changed) == (True, False)
    assert result.resource == before
    assert calls == [(3, {"key": "a", "value": 5})]


async def test_stale_check_is_skipped_for_new_and_identical_objects(store: Store) -> None:
    calls: list[str] = []

    def is_stale(incoming: PreparedObject, stored: bytes) -> bool:
        calls.append(incoming.object_id)
        return True

    await upsert(store, [prep(Item("a", 5))], now=at(0), is_stale=is_stale)
    (result,) = await upsert(store, [prep(Item("a", 5))], now=at(1), is_stale=is_stale)
    assert not result.changed
    assert calls == []


async def test_newer_object_passes_the_stale_check(store: Store) -> None:
    await synced_row(store, prep(Item("a", 5)))
    (result,) = await upsert(store, [prep(Item("a", 7))], now=at(10), is_stale=by_value)
    assert result.changed
    assert (result.resource.state, decoded(result.resource)["value"]) == (S.SCHEDULED, 7)


async def test_stale_object_is_ignored_even_with_process_existing(
    store: Store,
) -> None:
    before = await synced_row(store, prep(Item("a", 5)))
    (result,) = await upsert(
        store, [prep(Item("a", 3))], now=at(10), is_stale=by_value, process_existing=True
    )
    rec = await get(store, "a")
    assert rec == before
    assert decoded(rec)["value"] == 5
    assert not result.changed


# -- claim ----------------------------------------------------------------------


async def test_claim_takes_due_rows_oldest_first_then_by_id(store: Store) -> None:
    await upsert(store, [prep(Item("late"))], now=at(5))
    await upsert(store, [prep(Item("early1")), prep(Item("early2"))], now=at(1))
    claimed = await claim(store, at(10), client_id="client-b")
    assert [r.object_id for r in claimed] == ["early1", "early2", "late"]
    for rec in claimed:
        assert (rec.state, rec.attempt, rec.attempted_at, rec.attempted_by, rec.updated_at) == (
            S.PENDING,
            1,
            at(10),
            "client-b",
            at(10),
        )
    assert [r.scheduled_at for r in claimed] == [at(1), at(1), at(5)]
    assert await get(store, "late") == claimed[2]


async def test_claim_skips_rows_not_yet_due(store: Store) -> None:
    await upsert(store, [prep(Item("a"))], now=at(10))
    await upsert(store, [prep(Item("b"))], now=at(4))
    assert [r.object_id for r in await claim(store, at(5))] == ["b"]
    assert [r.object_id for r in await claim(store, at(10))] == ["a"]


async def test_claim_stops_at_the_limit_oldest_first(store: Store) -> None:
    for i, key in enumerate("abcd"):
        await upsert(store, [prep(Item(key))], now=at(i))
    assert [r.object_id for r in await claim(store, at(10), limit=3)] == ["a", "b", "c"]
    assert (await get(store, "d")).state is S.SCHEDULED
    assert [r.object_id for r in await claim(store, at(10), limit=3)] == ["d"]


async def test_claimed_row_is_not_claimed_again(store: Store) -> None:
    await upsert(store, [prep(Item("a"))], now=at(0))
    assert len(await claim(store, at(1))) == 1
    assert await claim(store, at(2), client_id="client-b") == []


async def test_claim_only_takes_claimable_states(store: Store) -> None:
    await upsert(
        store,
        [
            prep(Item(k))
            for k in ("synced", "failed", "degraded", "deleted", "pending", "scheduled")
        ],
        now=at(0),
    )
    recs = {r.object_id: r for r in await claim(store, at(1), limit=5)}
    assert set(recs) == {"synced", "failed", "degraded", "deleted", "pending"}
    await complete(
        store,
        [
            outcome(recs["synced"], OutcomeKind.SYNCED),
            outcome(
                recs["failed"],
                OutcomeKind.FAILED,
                error=error(recs["failed"], at(2)),
                retry_at=at(3),
            ),
            outcome(recs["degraded"], OutcomeKind.DEGRADED, error=error(recs["degraded"], at(2))),
            outcome(recs["deleted"], OutcomeKind.DELETED),
        ],
        now=at(2),
        client_id=CLIENT,
    )
    assert [r.object_id for r in await claim(store, at(10))] == ["scheduled", "failed"]


async def test_claim_is_per_namespace_and_kind(store: Store) -> None:
    await upsert(
        store,
        [
            prep(Item("a"), namespace="one"),
            prep(Item("b"), namespace="two"),
            prep(Gadget("c"), namespace="one"),
        ],
        now=at(0),
    )
    assert [r.object_id for r in await claim(store, at(1), namespace="one")] == ["a"]
    assert await claim(store, at(1), namespace="one") == []
    got = await claim(store, at(1), namespace="one", kinds={"gadget": None, "item": None})
    assert [r.object_id for r in got] == ["c"]
    assert [r.object_id for r in await claim(store, at(1), namespace="two")] == ["b"]


async def test_claim_caps_kinds_then_uncapped_kinds_share_the_rest(store: Store) -> None:
    for i in range(3):
        await upsert(store, [prep(Gadget(f"g{i}")), prep(Item(f"i{i}"))], now=at(i))
    got = await claim(store, at(10), kinds={"gadget": 1, "item": None}, limit=3)
    assert [(r.kind, r.object_id) for r in got] == [
        ("gadget", "g0"),
        ("item", "i0"),
        ("item", "i1"),
    ]


async def test_claim_cap_is_bounded_by_what_the_limit_leaves(store: Store) -> None:
    for i in range(3):
        await upsert(store, [prep(Gadget(f"g{i}")), prep(Item(f"i{i}"))], now=at(i))
    got = await claim(store, at(10), kinds={"item": 2, "gadget": 2}, limit=3)
    assert sorted(r.object_id for r in got) == ["g0", "i0", "i1"]


async def test_claim_skips_kinds_capped_at_zero_and_empty_requests(store: Store) -> None:
    await upsert(store, [prep(Gadget("g")), prep(Item("i"))], now=at(0))
    assert await claim(store, at(1), kinds={"gadget": 0, "item": None}, limit=0) == []
    assert await claim(store, at(1), kinds={}) == []
    got = await claim(store, at(1), kinds={"gadget": 0, "item": None})
    assert [r.object_id for r in got] == ["i"]


async def test_a_kind_cap_holds_across_the_requests_of_one_claim(store: Store) -> None:
    # A cap is per client: one claim serving two namespaces shares it.
    for ns in ("one", "two"):
        await upsert(store, [prep(Gadget(f"{ns}-{i}"), namespace=ns) for i in range(2)], now=at(0))
    got = await store.queue.claim(
        [ClaimRequest("one", 5, {"gadget": 1}), ClaimRequest("two", 5, {"gadget": 1})],
        now=at(5),
        client_id=CLIENT,
    )
    assert len(got) == 1
    # ... and what one namespace does not use, the next may take.
    await upsert(store, [prep(Gadget("three-0"), namespace="three")], now=at(0))
    got = await store.queue.claim(
        [ClaimRequest("empty", 5, {"gadget": 2}), ClaimRequest("three", 5, {"gadget": 2})],
        now=at(5),
        client_id=CLIENT,
    )
    assert [r.object_id for r in got] == ["three-0"]


async def test_claim_results_are_ordered_across_requests(store: Store) -> None:
    await upsert(store, [prep(Item("b"), namespace="two")], now=at(0))
    await upsert(store, [prep(Item("a"), namespace="one")], now=at(1))
    await upsert(store, [prep(Item("c"), namespace="two")], now=at(2))
    got = await store.queue.claim(
        [ClaimRequest("one", 5, {"item": None}), ClaimRequest("two", 5, {"item": None})],
        now=at(5),
        client_id=CLIENT,
    )
    assert [r.object_id for r in got] == ["b", "a", "c"]


# -- complete -------------------------------------------------------------------


async def test_synced_outcome_marks_row_synced(store: Store) -> None:
    await upsert(store, [prep(Item("a"))], now=at(0))
    rec = await claim_one(store, at(1))
    (applied,) = await complete(
        store, [outcome(rec, OutcomeKind.SYNCED)], now=at(3), client_id=CLIENT
    )
    assert (applied.id, applied.state, applied.attempt) == (rec.id, S.SYNCED, 1)
    assert (applied.scheduled_at, applied.synced_at) == (at(0), at(3))
    row = await get(store, "a")
    assert (row.state, row.attempt, row.synced_at, row.updated_at) == (S.SYNCED, 1, at(3), at(3))
    assert (row.attempted_by, row.errors) == (CLIENT, ())


async def test_failed_outcome_records_error_and_retries_at_retry_at(store: Store) -> None:
    await upsert(store, [prep(Item("a"))], now=at(0))
    rec = await claim_one(store, at(1))
    err = error(rec, at(2))
    (applied,) = await complete(
        store,
        [outcome(rec, OutcomeKind.FAILED, error=err, retry_at=at(7))],
        now=at(2),
        client_id=CLIENT,
    )
    assert (applied.state, applied.attempt, applied.scheduled_at, applied.synced_at) == (
        S.FAILED,
        1,
        at(7),
        None,
    )
    row = await get(store, "a")
    assert (row.state, row.errors, row.scheduled_at) == (S.FAILED, (err,), at(7))
    assert await claim(store, at(6)) == []
    again = await claim_one(store, at(7))
    assert (again.attempt, again.errors) == (2, (err,))
    err2 = error(again, at(8), "again")
    await complete(
        store,
        [outcome(again, OutcomeKind.FAILED, error=err2, retry_at=at(9))],
        now=at(8),
        client_id=CLIENT,
    )
    assert (await get(store, "a")).errors == (err, err2)


async def test_synced_after_failures_keeps_the_error_history(store: Store) -> None:
    await upsert(store, [prep(Item("a"))], now=at(0))
    rec = await claim_one(store, at(1))
    await fail(store, rec, at(2), retry_at=at(3))
    rec = await claim_one(store, at(3))
    await complete(store, [outcome(rec, OutcomeKind.SYNCED)], now=at(4), client_id=CLIENT)
    row = await get(store, "a")
    assert (row.state, row.attempt, len(row.errors)) == (S.SYNCED, 2, 1)


async def test_degraded_outcome_records_error_and_is_not_claimable(store: Store) -> None:
    await upsert(store, [prep(Item("a"))], now=at(0))
    rec = await claim_one(store, at(1))
    err = error(rec, at(2), "out of attempts")
    (applied,) = await complete(
        store, [outcome(rec, OutcomeKind.DEGRADED, error=err)], now=at(2), client_id=CLIENT
    )
    assert (applied.state, applied.attempt, applied.scheduled_at) == (S.DEGRADED, 1, at(0))
    assert (await get(store, "a")).errors == (err,)
    assert await claim(store, at(100)) == []
    assert await store.queue.next_scheduled_at(["default"], ["item"]) is None


async def test_deleted_outcome_marks_row_deleted(store: Store) -> None:
    await upsert(store, [prep(Item("a"))], now=at(0))
    rec = await claim_one(store, at(1))
    (applied,) = await complete(
        store, [outcome(rec, OutcomeKind.DELETED)], now=at(2), client_id=CLIENT
    )
    assert (applied.state, applied.attempt, applied.synced_at) == (S.DELETED, 1, None)
    assert (await get(store, "a")).state is S.DELETED
    assert await claim(store, at(100)) == []


async def test_handback_restores_the_attempt_and_schedules_at_now(store: Store) -> None:
    await upsert(store, [prep(Item("a"))], now=at(0))
    rec = await claim_one(store, at(1))
    await fail(store, rec, at(2), retry_at=at(3))
    rec = await claim_one(store, at(4))
    (applied,) = await complete(
        store, [outcome(rec, OutcomeKind.HANDBACK)], now=at(5), client_id=CLIENT
    )
    assert (applied.state, applied.attempt, applied.scheduled_at) == (S.SCHEDULED, 1, at(5))
    row = await get(store, "a")
    assert (row.state, row.attempt, len(row.errors)) == (S.SCHEDULED, 1, 1)
    assert (await claim_one(store, at(5), client_id="client-b")).attempt == 2


async def test_late_outcome_of_a_handed_back_claim_is_not_applied(store: Store) -> None:
    # A forced stop hands back work that ignores cancellation before it ends;
    # if it ever ends, its outcome must change nothing.
    await upsert(store, [prep(Item("a"))], now=at(0))
    rec = await claim_one(store, at(1))
    await complete(store, [outcome(rec, OutcomeKind.HANDBACK)], now=at(2), client_id=CLIENT)
    before = await get(store, "a")
    for kind in (OutcomeKind.SYNCED, OutcomeKind.DELETED, OutcomeKind.HANDBACK):
        assert await complete(store, [outcome(rec, kind)], now=at(3), client_id=CLIENT) == []
    assert await get(store, "a") == before
    assert (before.state, before.attempt, before.synced_at) == (S.SCHEDULED, 0, None)


async def test_guard_rejects_stale_attempt_other_client_and_finished_rows(store: Store) -> None:
    await upsert(store, [prep(Item("a"))], now=at(0))
    first = await claim_one(store, at(1))
    await complete(store, [outcome(first, OutcomeKind.HANDBACK)], now=at(2), client_id=CLIENT)
    current = await claim_one(store, at(3))
    before = await get(store, "a")
    rejected = [
        outcome(current, OutcomeKind.SYNCED),  # wrong client, below
    ]
    assert await complete(store, rejected, now=at(4), client_id="client-b") == []
    stale = Outcome(
        id=current.id, attempt=current.attempt + 1, hash=current.hash, kind=OutcomeKind.SYNCED
    )
    assert await complete(store, [stale], now=at(4), client_id=CLIENT) == []
    missing = Outcome(id=999, attempt=1, hash=current.hash, kind=OutcomeKind.SYNCED)
    assert await complete(store, [missing], now=at(4), client_id=CLIENT) == []
    assert await get(store, "a") == before
    assert (
        len(
            await complete(
                store, [outcome(current, OutcomeKind.SYNCED)], now=at(5), client_id=CLIENT
            )
        )
        == 1
    )
    assert (
        await complete(store, [outcome(current, OutcomeKind.DELETED)], now=at(6), client_id=CLIENT)
        == []
    )
    assert (await get(store, "a")).state is S.SYNCED


async def test_outcome_of_an_earlier_claim_is_rejected(store: Store) -> None:
    await upsert(store, [prep(Item("a"))], now=at(0))
    old = await claim_one(store, at(1))
    await fail(store, old, at(2), retry_at=at(3))
    new = await claim_one(store, at(3))
    assert (
        await complete(store, [outcome(old, OutcomeKind.SYNCED)], now=at(4), client_id=CLIENT) == []
    )
    assert (await get(store, "a")).state is S.PENDING
    assert new.attempt == 2


async def test_complete_applies_a_batch_and_reports_only_what_applied(store: Store) -> None:
    await upsert(store, [prep(Item(k)) for k in "abc"], now=at(0))
    a, b, c = await claim(store, at(1))
    applied = await complete(
        store,
        [
            outcome(a, OutcomeKind.SYNCED),
            Outcome(b.id, 7, b.hash, OutcomeKind.SYNCED),
            outcome(c, OutcomeKind.DELETED),
        ],
        now=at(2),
        client_id=CLIENT,
    )
    assert sorted((x.id, x.state) for x in applied) == [(a.id, S.SYNCED), (c.id, S.DELETED)]
    assert (await get(store, "b")).state is S.PENDING
    assert await complete(store, [], now=at(3), client_id=CLIENT) == []


@pytest.mark.parametrize(
    "kind", [OutcomeKind.SYNCED, OutcomeKind.FAILED, OutcomeKind.DEGRADED, OutcomeKind.DELETED]
)
async def test_outcome_after_object_changed_reschedules_at_now_with_attempt_zero(
    store: Store, kind: OutcomeKind
) -> None:
    await upsert(store, [prep(Item("a", 1))], now=at(0))
    rec = await claim_one(store, at(1))
    await upsert(store, [prep(Item("a", 2))], now=at(2))
    extra: dict[str, Any] = {}
    if kind in (OutcomeKind.FAILED, OutcomeKind.DEGRADED):
        extra["error"] = error(rec, at(3))
    if kind is OutcomeKind.FAILED:
        extra["retry_at"] = at(50)
    (applied,) = await complete(store, [outcome(rec, kind, **extra)], now=at(3), client_id=CLIENT)
    assert (applied.state, applied.attempt, applied.scheduled_at, applied.synced_at) == (
        S.SCHEDULED,
        0,
        at(3),
        None,
    )
    row = await get(store, "a")
    assert (row.state, row.attempt, row.errors, decoded(row)["value"]) == (S.SCHEDULED, 0, (), 2)
    assert (await claim_one(store, at(3))).attempt == 1


async def test_outcome_after_object_changed_clears_errors_of_the_old_object(
    store: Store,
) -> None:
    await upsert(store, [prep(Item("a", 1))], now=at(0))
    rec = await claim_one(store, at(1))
    await fail(store, rec, at(2), retry_at=at(3))
    rec = await claim_one(store, at(3))
    await upsert(store, [prep(Item("a", 2))], now=at(4))
    await complete(store, [outcome(rec, OutcomeKind.SYNCED)], now=at(5), client_id=CLIENT)
    row = await get(store, "a")
    assert (row.state, row.attempt) == (S.SCHEDULED, 0)
    assert row.errors == ()


async def test_handback_after_object_changed_still_restores_the_attempt(store: Store) -> None:
    await upsert(store, [prep(Item("a", 1))], now=at(0))
    rec = await claim_one(store, at(1))
    await fail(store, rec, at(2), retry_at=at(3))
    rec = await claim_one(store, at(3))
    await upsert(store, [prep(Item("a", 2))], now=at(4))
    (applied,) = await complete(
        store, [outcome(rec, OutcomeKind.HANDBACK)], now=at(5), client_id=CLIENT
    )
    assert (applied.state, applied.attempt, applied.scheduled_at) == (S.SCHEDULED, 1, at(5))
    assert len((await get(store, "a")).errors) == 1


async def test_errors_are_capped_dropping_the_oldest(store: Store) -> None:
    await upsert(store, [prep(Item("a"), max_attempts=100)], now=at(0))
    total = MAX_ERRORS + 3
    for i in range(total):
        rec = await claim_one(store, at(2 * i + 1))
        await fail(store, rec, at(2 * i + 1), retry_at=at(2 * i + 2))
    row = await get(store, "a")
    assert len(row.errors) == MAX_ERRORS
    assert [e.attempt for e in row.errors] == list(range(4, total + 1))
    assert row.errors[-1] == AttemptError(at(2 * total - 1), total, "boom", "Traceback ...")


# -- reads ----------------------------------------------------------------------


async def test_next_scheduled_at_is_the_earliest_claimable_row(store: Store) -> None:
    assert await store.queue.next_scheduled_at(["default"], ["item"]) is None
    await upsert(store, [prep(Item("a"))], now=at(3))
    await upsert(store, [prep(Item("b"))], now=at(8))
    await upsert(store, [prep(Item("c"), namespace="other"), prep(Gadget("d"))], now=at(1))
    assert await store.queue.next_scheduled_at(["default"], ["item"]) == at(3)
    assert await store.queue.next_scheduled_at(["default", "other"], ["item", "gadget"]) == at(1)
    await claim(store, at(3))  # a pending: no longer counts; b is not due yet
    assert await store.queue.next_scheduled_at(["default"], ["item"]) == at(8)
    assert await store.queue.next_scheduled_at([], ["item"]) is None


async def test_get_resource_finds_by_kind_and_id(store: Store) -> None:
    await upsert(store, [prep(Item("a")), prep(Gadget("a", 9))], now=at(0))
    assert await store.insights.get_resource("item", "missing") is None
    assert decoded(await get(store, "a", "gadget")) == {"key": "a", "value": 9}
    assert (await get(store, "a", "item")).kind == "item"


async def test_list_resources_filters_and_orders_by_id(store: Store) -> None:
    await upsert(
        store,
        [prep(Item("a")), prep(Gadget("b")), prep(Item("c"), namespace="other"), prep(Item("d"))],
        now=at(0),
    )
    await claim(store, at(1), limit=1)  # a becomes pending

    async def keys(**kw: Any) -> list[str]:
        return [r.object_id for r in await store.insights.list_resources(ResourceFilter(**kw))]

    assert await keys() == ["a", "b", "c", "d"]
    assert await keys(kind="item") == ["a", "c", "d"]
    assert await keys(namespace="other") == ["c"]
    assert await keys(states=(S.PENDING,)) == ["a"]
    assert await keys(kind="item", namespace="default", states=(S.SCHEDULED,)) == ["d"]
    assert await keys(states=(S.UNKNOWN,)) == []
    assert await keys(limit=0) == []


async def test_list_resources_pages_with_limit_and_after_id(store: Store) -> None:
    await upsert(store, [prep(Item(f"k{i:02}")) for i in range(7)], now=at(0))
    pages: list[list[int]] = []
    after: int | None = None
    for _ in range(5):  # bounded: a paging bug must fail, not loop forever
        page = await store.insights.list_resources(ResourceFilter(limit=3, after_id=after))
        if not page:
            break
        pages.append([r.id for r in page])
        after = page[-1].id
    assert pages == [[1, 2, 3], [4, 5, 6], [7]]
    rest = await store.insights.list_resources(ResourceFilter(kind="item", after_id=5))
    assert [r.id for r in rest] == [6, 7]


async def test_records_are_snapshots(store: Store) -> None:
    rec = await upsert_one(store, prep(Item("a"), metadata={"m": [1]}), at(0))
    cast(dict[str, Any], rec.metadata)["m"].append(2)
    await claim(store, at(1))
    assert rec.state is S.SCHEDULED
    fresh = await get(store, "a")
    assert (fresh.state, dict(fresh.metadata)) == (S.PENDING, {"m": [1]})


# -- transactions ----------------------------------------------------------------


class Rollback(Exception):
    pass


async def upsert_then_roll_back(store: Store, items: list[PreparedObject], now: datetime) -> None:
    async with store.queue.transaction() as tx:
        await upsert(store, items, now=now, tx=tx)
        raise Rollback


async def test_transaction_upserts_are_visible_only_after_commit(store: Store) -> None:
    async with store.queue.transaction() as tx:
        (result,) = await upsert(store, [prep(Item("a"))], now=at(0), tx=tx)
        assert (result.resource.id, result.resource.state, result.changed) == (1, S.SCHEDULED, True)
        assert await store.insights.get_resource("item", "a") is None
        assert await store.insights.list_resources(ResourceFilter()) == []
        assert await claim(store, at(1)) == []
    assert await get(store, "a") == result.resource


async def test_transaction_rollback_discards_its_upserts(store: Store) -> None:
    before = await synced_row(store, prep(Item("a", 1)))
    with pytest.raises(Rollback):
        await upsert_then_roll_back(store, [prep(Item("a", 2)), prep(Item("b"))], at(5))
    assert await get(store, "a") == before
    assert await store.insights.get_resource("item", "b") is None
    # The ids the rolled-back transaction took stay used, like a sequence.
    assert (await upsert_one(store, prep(Item("c")), at(6))).id == 4


async def test_chunked_upserts_equal_one_upsert_and_commit_together(store: Store) -> None:
    await upsert(store, [prep(Item("c", 1)), prep(Item("e", 1))], now=at(0))
    chunks = [
        [prep(Item("a")), prep(Item("b"))],
        [prep(Item("c", 2)), prep(Item("d"))],
        [prep(Item("e", 1))],
    ]
    given = iter(chunks)

    async def next_chunk() -> list[PreparedObject] | None:
        return next(given, None)

    async with store.queue.transaction(informs_only=True) as tx:
        results = await store.queue.upsert_chunks(next_chunk, UpsertParams(at(3)), tx)
        assert await store.insights.get_resource("item", "a") is None
    assert [r.resource.object_id for r in results] == ["a", "b", "c", "d", "e"]
    assert [(r.already_exists, r.changed) for r in results] == [
        (False, True),
        (False, True),
        (True, True),
        (False, True),
        (True, False),
    ]
    assert decoded(await get(store, "c"))["value"] == 2
    assert [r.resource for r in results] == [await get(store, k) for k in "abcde"]


async def test_transaction_sees_its_own_upserts(store: Store) -> None:
    async with store.queue.transaction() as tx:
        await upsert(store, [prep(Item("a", 1))], now=at(0), tx=tx)
        (again,) = await upsert(store, [prep(Item("a", 1))], now=at(1), tx=tx)
        assert (again.already_exists, again.changed, again.resource.id) == (True, False, 1)
        (changed,) = await upsert(store, [prep(Item("a", 2))], now=at(2), tx=tx)
        assert (changed.already_exists, changed.changed) == (True, True)
    row = await get(store, "a")
    assert (decoded(row)["value"], row.created_at, row.updated_at) == (2, at(0), at(2))


async def test_claim_skips_rows_held_by_an_open_transaction(store: Store) -> None:
    await upsert(store, [prep(Item("a", 1)), prep(Item("b", 1)), prep(Item("c"))], now=at(0))
    async with store.queue.transaction() as tx:
        await upsert(store, [prep(Item("a", 1)), prep(Item("b", 2))], now=at(1), tx=tx)
        assert [r.object_id for r in await claim(store, at(2))] == ["c"]
    got = await claim(store, at(3))
    assert [(r.object_id, decoded(r)["value"]) for r in got] == [("a", 1), ("b", 2)]


async def test_outcomes_for_rows_held_by_a_transaction_are_skipped_and_reported(
    store: Store,
) -> None:
    await upsert(store, [prep(Item(k, 1)) for k in "abc"], now=at(0))
    a, b, c = await claim(store, at(1))
    with trio.fail_after(5):  # skipped, never waited for
        async with store.queue.transaction() as tx:
            await upsert(store, [prep(Item("b", 2))], now=at(2), tx=tx)
            done = await store.queue.complete(
                [outcome(r, OutcomeKind.SYNCED) for r in (a, b, c)], now=at(3), client_id=CLIENT
            )
            assert sorted(x.id for x in done.applied) == [a.id, c.id]
            assert done.locked == [b.id]
            assert (await get(store, "b")).state is S.PENDING
    # Once the transaction is over, the same outcome applies, and sees the
    # change committed meanwhile: rescheduled for the new version.
    done = await store.queue.complete([outcome(b, OutcomeKind.SYNCED)], now=at(4), client_id=CLIENT)
    assert ([(x.id, x.state, x.attempt) for x in done.applied], done.locked) == (
        [(b.id, S.SCHEDULED, 0)],
        [],
    )


async def test_a_held_row_is_reported_even_when_its_outcome_would_not_apply(
    store: Store,
) -> None:
    """The guard is checked once the row is free; rows that are gone are not
    reported (there is nothing to wait for)."""
    await upsert(store, [prep(Item("a", 1))], now=at(0))
    rec = await claim_one(store, at(1))
    ghost = Outcome(id=999, attempt=1, hash=rec.hash, kind=OutcomeKind.SYNCED)
    with trio.fail_after(5):  # skipped, never waited for
        async with store.queue.transaction() as tx:
            await upsert(store, [prep(Item("a", 2))], now=at(2), tx=tx)
            done = await store.queue.complete(
                [outcome(rec, OutcomeKind.SYNCED), ghost], now=at(3), client_id="client-b"
            )
            assert (done.applied, done.locked) == ([], [rec.id])
    done = await store.queue.complete(
        [outcome(rec, OutcomeKind.SYNCED)], now=at(4), client_id="client-b"
    )
    assert (done.applied, done.locked) == ([], [])


async def test_upsert_of_a_row_held_by_a_transaction_gives_up_naming_it(
    backend: tuple[str, str, str],
) -> None:
    async with lock_bounded_store(backend, lock_timeout=0.3) as store:
        await upsert(store, [prep(Item("a", 1)), prep(Item("b", 1))], now=at(0))
        async with store.queue.transaction() as tx:
            await upsert(store, [prep(Item("b", 2))], now=at(1), tx=tx)
            started = trio.current_time()
            with trio.fail_after(5), pytest.raises(delta.LockTimeoutError) as caught:
                await upsert(store, [prep(Item("b", 3))], now=at(2))
            assert 0.25 <= trio.current_time() - started < 3
            assert (caught.value.kind, caught.value.object_id) == ("item", "b")
            assert "item 'b'" in str(caught.value)
            assert "lock" in str(caught.value)
            assert not caught.value.maybe_applied
            # Another row is not held up, and nothing of the failed one was written.
            await upsert(store, [prep(Item("a", 2))], now=at(3))
            assert decoded(await get(store, "b"))["value"] == 1
        assert decoded(await get(store, "b"))["value"] == 2


async def test_a_quiet_batch_gives_up_naming_the_held_row(
    backend: tuple[str, str, str],
) -> None:
    async with lock_bounded_store(backend, lock_timeout=0.3) as store:
        await upsert(store, [prep(Item(k, 1)) for k in "abc"], now=at(0))
        async with store.queue.transaction() as tx:
            await upsert(store, [prep(Item("b", 2))], now=at(1), tx=tx)
            with trio.fail_after(5), pytest.raises(delta.LockTimeoutError) as caught:
                await store.queue.upsert_quiet(
                    [prep(Item(k, 3)) for k in "abc"], UpsertParams(at(2))
                )
            assert (caught.value.kind, caught.value.object_id) == ("item", "b")
        assert [decoded(await get(store, k))["value"] for k in "abc"] == [1, 2, 1]


async def test_upsert_in_a_transaction_gives_up_on_a_row_another_holds(
    backend: tuple[str, str, str],
) -> None:
    async with lock_bounded_store(backend, lock_timeout=0.3) as store:
        await upsert(store, [prep(Item("a", 1))], now=at(0))
        async with store.queue.transaction() as holder:
            await upsert(store, [prep(Item("a", 2))], now=at(1), tx=holder)
            with trio.fail_after(5), pytest.raises(delta.LockTimeoutError, match="item 'a'"):
                async with store.queue.transaction() as tx:
                    await upsert(store, [prep(Item("a", 3))], now=at(2), tx=tx)
        assert decoded(await get(store, "a"))["value"] == 2


async def test_upsert_rejects_a_foreign_transaction(store: Store) -> None:
    class Foreign:
        async def execute(self, query: str, params: Any = None) -> list[tuple[Any, ...]]:
            return []

    with pytest.raises(ConfigError, match="tx must come from"):
        await upsert(store, [prep(Item("a"))], now=at(0), tx=Foreign())


async def test_memory_transaction_cannot_run_sql() -> None:
    async with open_memory_store() as memory:
        with pytest.raises(ConfigError, match="memory store cannot run SQL"):
            async with memory.queue.transaction() as tx:
                await tx.execute("select 1")
        assert isinstance(memory, MemoryStore)
        assert (memory.schema, await memory.database_now()) == ("memory", T0)


async def test_postgres_transaction_runs_sql(pg_dsn: str, schema: str) -> None:
    async with open_postgres_store(pg_dsn, schema=schema, pool_size=2) as pg:
        assert isinstance(pg, PostgresStore)
        async with pg.queue.transaction() as tx:
            assert await tx.execute("select %s::int + 1", [1]) == [(2,)]


# -- wake-ups --------------------------------------------------------------------


async def next_payload(listener: Any, seconds: float = 5.0) -> str:
    with trio.fail_after(seconds):
        return cast(str, await listener.wait())


async def test_listener_wakes_on_upsert_with_the_namespace(store: Store) -> None:
    async with store.queue.listen() as listener:
        await upsert(store, [prep(Item("a"), namespace="alpha")], now=at(0))
        assert await next_payload(listener) == "alpha"


async def test_listener_keeps_every_wakeup_that_queued_up_before_it_waits(
    store: Store, request: pytest.FixtureRequest
) -> None:
    async with store.queue.listen() as listener:
        await upsert(
            store,
            [prep(Item("a"), namespace="alpha"), prep(Item("b"), namespace="beta")],
            now=at(0),
        )
        await upsert(store, [prep(Item("c"), namespace="gamma")], now=at(0))
        await trio.sleep(0.1)  # let every notification arrive before the first wait()
        got = [await next_payload(listener, seconds=1.0) for _ in range(3)]
        assert sorted(got[:2]) == ["alpha", "beta"]
        assert got[2] == "gamma"


async def test_listener_is_not_woken_by_writes_that_make_nothing_claimable(store: Store) -> None:
    await upsert(store, [prep(Item("a", 1))], now=at(0))
    async with store.queue.listen() as listener:
        await upsert(store, [prep(Item("a", 1))], now=at(1))  # unchanged
        rec = await claim_one(store, at(2))
        await upsert(store, [prep(Item("a", 2))], now=at(3))  # changed, but pending
        await upsert(store, [prep(Item("s1"), namespace="sentinel")], now=at(3))
        assert await next_payload(listener) == "sentinel"
        # The outcome sees the changed hash: rescheduled, so claimable again.
        await complete(store, [outcome(rec, OutcomeKind.SYNCED)], now=at(4), client_id=CLIENT)
        assert await next_payload(listener) == "default"
        rec = await claim_one(store, at(5))
        await fail(store, rec, at(6), retry_at=at(9))  # claimable only later
        if store.notifications_reliable:
            # Announced all the same: its clients do not poll for retries.
            assert await next_payload(listener) == "default"
        await upsert(store, [prep(Item("s2"), namespace="sentinel")], now=at(6))
        assert await next_payload(listener) == "sentinel"


async def test_listener_wakes_on_handback(store: Store) -> None:
    await upsert(store, [prep(Item("a"), namespace="alpha")], now=at(0))
    rec = await claim_one(store, at(1), namespace="alpha")
    async with store.queue.listen() as listener:
        await complete(store, [outcome(rec, OutcomeKind.HANDBACK)], now=at(2), client_id=CLIENT)
        assert await next_payload(listener) == "alpha"


async def test_transaction_wakes_listeners_on_commit_only(store: Store) -> None:
    async with store.queue.listen() as listener:
        with pytest.raises(Rollback):
            await upsert_then_roll_back(store, [prep(Item("a"), namespace="rolled")], at(0))
        async with store.queue.transaction() as tx:
            await upsert(store, [prep(Item("b"), namespace="alpha")], now=at(0), tx=tx)
            await upsert(store, [prep(Item("c"), namespace="alpha")], now=at(0), tx=tx)
            with trio.move_on_after(0.2) as early:
                await listener.wait()
            assert early.cancelled_caught
        assert await next_payload(listener) == "alpha"
        await upsert(store, [prep(Item("s"), namespace="sentinel")], now=at(1))
        assert await next_payload(listener) == "sentinel"  # one wake-up per transaction


async def test_listener_hears_inform_requests_and_resignations(store: Store) -> None:
    await store.control.elect("maintenance", client_id=CLIENT, now=at(0), expires_at=at(10))
    async with store.queue.listen() as listener:
        await store.control.request_inform("item", now=at(1), process_existing=False, options=None)
        assert await next_payload(listener) == "inform:item"
        await store.control.resign("maintenance", client_id=CLIENT)
        assert await next_payload(listener) == "leader:maintenance"


# -- invalidate ------------------------------------------------------------------


async def test_invalidate_expires_a_synced_row_claimable_at_now(store: Store) -> None:
    await synced_row(store, prep(Item("a")))
    async with store.queue.listen() as listener:
        rec = await invalidate(store, "item", "a", now=at(10))
        assert rec is not None
        # A new round of work: attempts (and errors) start afresh.
        assert (rec.state, rec.scheduled_at, rec.updated_at, rec.attempt) == (
            S.EXPIRED,
            at(10),
            at(10),
            0,
        )
        assert await next_payload(listener) == "default"
    assert await get(store, "a") == rec
    assert (await claim_one(store, at(10))).attempt == 1


async def test_invalidate_leaves_rows_that_are_not_synced(store: Store) -> None:
    await upsert(store, [prep(Item("a")), prep(Item("b"))], now=at(0))
    await claim(store, at(1), limit=1)
    before = await store.insights.list_resources(ResourceFilter())
    assert await invalidate(store, "item", "a", now=at(5)) is None  # pending
    assert await invalidate(store, "item", "b", now=at(5)) is None  # scheduled
    assert await invalidate(store, "item", "missing", now=at(5)) is None
    assert await store.insights.list_resources(ResourceFilter()) == before


# -- changes by hand (insights) ------------------------------------------------------


async def mixed_rows(store: Store) -> None:
    """synced a (tag blue), b (tags blue, big); failed c; degraded d; scheduled e;
    synced o in namespace other."""
    await synced_row(store, prep(Item("a"), tags=["blue"]))
    await synced_row(store, prep(Item("b"), tags=["blue", "big"]))
    await synced_row(store, prep(Item("o"), namespace="other"))
    for key, attempts in (("c", 5), ("d", 1)):
        await upsert(store, [prep(Item(key), max_attempts=attempts)], now=at(3))
        rec = await claim_one(store, at(4))
        kind = OutcomeKind.FAILED if attempts > 1 else OutcomeKind.DEGRADED
        await complete(
            store,
            [
                outcome(
                    rec, kind, error=error(rec, at(4)), retry_at=at(100) if attempts > 1 else None
                )
            ],
            now=at(4),
            client_id=CLIENT,
        )
    await upsert(store, [prep(Item("e"))], now=at(5))


async def test_count_states_groups_by_kind_namespace_and_state(store: Store) -> None:
    await mixed_rows(store)
    counts = await store.insights.count_states(ResourceFilter(), at(5))
    assert [(c.kind, c.namespace, c.state, c.count) for c in counts] == [
        ("item", "default", S.DEGRADED, 1),
        ("item", "default", S.FAILED, 1),
        ("item", "default", S.SCHEDULED, 1),
        ("item", "default", S.SYNCED, 2),
        ("item", "other", S.SYNCED, 1),
    ]
    scheduled = next(c for c in counts if c.state is S.SCHEDULED)
    assert scheduled.oldest_scheduled_at == at(5)
    assert all(c.oldest_scheduled_at is None for c in counts if c is not scheduled)
    only = await store.insights.count_states(ResourceFilter(namespace="other"), at(5))
    assert [(c.namespace, c.count) for c in only] == [("other", 1)]


async def test_known_kinds_come_from_controllers_and_resources(store: Store) -> None:
    assert await store.insights.known_kinds() == []
    await upsert(store, [prep(Item("a"))], now=at(0))
    await store.control.ensure_controllers({"gadget": None}, now=at(0))
    assert await store.insights.known_kinds() == ["gadget", "item"]


async def test_retry_reschedules_failed_and_degraded_with_a_fresh_start(store: Store) -> None:
    await mixed_rows(store)
    async with store.queue.listen() as listener:
        rows = await store.insights.change(Change.RETRY, ResourceFilter(), now=at(10))
        assert await next_payload(listener) == "default"
    assert [(r.object_id, r.state, r.attempt, r.errors, r.scheduled_at) for r in rows] == [
        ("c", S.SCHEDULED, 0, (), at(10)),
        ("d", S.SCHEDULED, 0, (), at(10)),
    ]
    assert await get(store, "c") == rows[0]


async def test_invalidate_by_tags_and_ids_touches_only_synced_matches(store: Store) -> None:
    await mixed_rows(store)
    rows = await store.insights.change(
        Change.INVALIDATE, ResourceFilter(tags=("blue", "big")), now=at(10)
    )
    assert [r.object_id for r in rows] == ["b"]
    rows = await store.insights.change(
        Change.INVALIDATE, ResourceFilter(kind="item", object_ids=("a", "c", "e")), now=at(11)
    )
    assert [(r.object_id, r.state, r.attempt) for r in rows] == [("a", S.EXPIRED, 0)]
    assert (await get(store, "c")).state is S.FAILED


async def test_delete_marks_rows_and_hard_delete_removes_them(store: Store) -> None:
    await mixed_rows(store)
    deleted = await store.insights.change(
        Change.DELETE, ResourceFilter(states=(S.SYNCED, S.DELETED), limit=2), now=at(10)
    )
    assert [(r.object_id, r.state, r.updated_at) for r in deleted] == [
        ("a", S.DELETED, at(10)),
        ("b", S.DELETED, at(10)),
    ]
    again = await store.insights.change(
        Change.DELETE, ResourceFilter(object_ids=("a",)), now=at(11)
    )
    assert again == []  # already deleted
    gone = await store.insights.change(
        Change.HARD_DELETE, ResourceFilter(namespace="other"), now=at(12)
    )
    assert [r.object_id for r in gone] == ["o"]
    assert await store.insights.get_resource("item", "o") is None
    left = await store.insights.list_resources(ResourceFilter())
    assert [r.object_id for r in left] == ["a", "b", "c", "d", "e"]


# -- the informer schedule ---------------------------------------------------------


async def test_ensure_controllers_creates_rows_and_keeps_existing_schedules(store: Store) -> None:
    await store.control.ensure_controllers({"item": at(10), "gadget": None}, now=at(0))
    await store.control.ensure_controllers(
        {"item": at(99), "gadget": at(20), "other": at(5)}, now=at(1)
    )
    item, gadget = await controller(store, "item"), await controller(store, "gadget")
    assert (item.next_inform_at, gadget.next_inform_at) == (at(10), at(20))
    assert (
        item.cursor,
        item.lease_owner,
        item.requested_at,
        item.process_existing,
        item.last_run_at,
        item.last_error,
    ) == (None, None, None, False, None, None)
    assert [c.kind for c in await store.control.list_controllers()] == ["gadget", "item", "other"]
    assert await store.control.get_controller("missing") is None


async def test_ensure_controllers_leaves_a_leased_row_unscheduled(store: Store) -> None:
    await store.control.request_inform("item", now=at(0), process_existing=False, options=None)
    await claim_inform(store, "item", now=at(1), client_id="c1", lease_until=at(60))
    await store.control.ensure_controllers({"item": at(10)}, now=at(2))
    ctl = await controller(store, "item")
    assert (ctl.next_inform_at, ctl.lease_owner) == (None, "c1")
    await finish_inform(
        store,
        "item",
        now=at(3),
        client_id="c1",
        cursor=None,
        reschedule=False,
        next_inform_at=None,
        requested_at=at(0),
        error=None,
    )
    await store.control.ensure_controllers({"item": at(10)}, now=at(4))
    assert (await controller(store, "item")).next_inform_at == at(10)


async def test_informer_lease_is_taken_when_due_and_held_until_it_expires(store: Store) -> None:
    await store.control.ensure_controllers({"item": at(10)}, now=at(0))
    assert await claim_inform(store, "item", now=at(9), client_id="c1", lease_until=at(20)) is None
    won = await claim_inform(store, "item", now=at(10), client_id="c1", lease_until=at(20))
    assert won is not None
    assert (won.cursor, won.requested_at, won.process_existing, won.options) == (
        None,
        None,
        False,
        None,
    )
    assert await claim_inform(store, "item", now=at(20), client_id="c2", lease_until=at(30)) is None
    ctl = await controller(store, "item")
    assert (ctl.lease_owner, ctl.lease_expires_at) == ("c1", at(20))
    assert (
        await claim_inform(store, "item", now=at(21), client_id="c2", lease_until=at(30))
        is not None
    )
    assert (
        await claim_inform(store, "missing", now=at(21), client_id="c2", lease_until=at(30)) is None
    )


async def test_finish_inform_releases_lease_and_advances_schedule(store: Store) -> None:
    await store.control.ensure_controllers({"item": at(0)}, now=at(0))
    await claim_inform(store, "item", now=at(1), client_id="c1", lease_until=at(60))
    finish: dict[str, Any] = {
        "reschedule": True,
        "next_inform_at": at(100),
        "requested_at": None,
        "error": None,
    }
    await finish_inform(store, "item", now=at(2), client_id="c2", cursor=at(-5), **finish)
    ctl = await controller(store, "item")
    assert (ctl.lease_owner, ctl.cursor) == ("c1", None)  # not c2's lease
    await finish_inform(store, "item", now=at(3), client_id="c1", cursor=at(-5), **finish)
    ctl = await controller(store, "item")
    assert (ctl.lease_owner, ctl.lease_expires_at, ctl.cursor, ctl.next_inform_at) == (
        None,
        None,
        at(-5),
        at(100),
    )
    assert (ctl.last_run_at, ctl.last_error) == (at(3), None)
    await claim_inform(store, "item", now=at(100), client_id="c1", lease_until=at(160))
    await finish_inform(
        store,
        "item",
        now=at(101),
        client_id="c1",
        cursor=None,
        reschedule=False,
        next_inform_at=None,
        requested_at=None,
        error="boom",
    )
    ctl = await controller(store, "item")
    assert (ctl.cursor, ctl.next_inform_at, ctl.last_error) == (at(-5), at(100), "boom")


async def test_inform_request_runs_at_once_and_is_cleared_by_the_run_it_served(
    store: Store,
) -> None:
    await store.control.ensure_controllers({"item": at(1000)}, now=at(0))
    await store.control.request_inform(
        "item", now=at(1), process_existing=True, options={"limit": 5}
    )
    await store.control.request_inform("item", now=at(2), process_existing=False, options=None)
    await store.control.request_inform(
        "fresh", now=at(2), process_existing=False, options={"x": [1]}
    )
    claimed = await claim_inform(store, "item", now=at(3), client_id="c1", lease_until=at(60))
    assert claimed is not None
    assert (claimed.requested_at, claimed.process_existing, claimed.options) == (
        at(2),
        True,
        {"limit": 5},
    )
    fresh = await controller(store, "fresh")
    assert (fresh.requested_at, fresh.next_inform_at) == (at(2), None)
    # A newer request arrives while the run is going: it survives the finish.
    await store.control.request_inform("item", now=at(4), process_existing=False, options=None)
    await finish_inform(
        store,
        "item",
        now=at(5),
        client_id="c1",
        cursor=None,
        reschedule=False,
        next_inform_at=None,
        requested_at=claimed.requested_at,
        error=None,
    )
    ctl = await controller(store, "item")
    assert (ctl.requested_at, ctl.process_existing) == (at(4), True)
    again = await claim_inform(store, "item", now=at(6), client_id="c1", lease_until=at(60))
    assert again is not None
    assert again.options == {"limit": 5}
    await finish_inform(
        store,
        "item",
        now=at(7),
        client_id="c1",
        cursor=None,
        reschedule=False,
        next_inform_at=None,
        requested_at=again.requested_at,
        error=None,
    )
    ctl = await controller(store, "item")
    assert (ctl.requested_at, ctl.process_existing) == (None, False)
    assert await claim_inform(store, "item", now=at(8), client_id="c1", lease_until=at(60)) is None


# -- leader election ----------------------------------------------------------------


async def test_one_leader_at_a_time_until_its_lease_expires(store: Store) -> None:
    assert await store.control.get_leader("m") is None
    assert await store.control.elect("m", client_id="c1", now=at(0), expires_at=at(10))
    assert not await store.control.elect("m", client_id="c2", now=at(5), expires_at=at(15))
    assert await store.control.elect("m", client_id="c1", now=at(6), expires_at=at(16))  # renew
    assert await store.control.get_leader("m") == delta_leader("c1", at(0), at(16))
    assert not await store.control.elect("m", client_id="c2", now=at(16), expires_at=at(26))
    assert await store.control.elect("m", client_id="c2", now=at(17), expires_at=at(27))
    assert await store.control.get_leader("m") == delta_leader("c2", at(17), at(27))


async def test_a_late_renewal_never_shortens_the_lease(store: Store) -> None:
    """A renewal the client gave up on may still commit after a newer one
    (its statement was on its way, or waiting for a lock, on a connection the
    client abandoned): the newer lease, the one the leader acts on, stands."""
    assert await store.control.elect("m", client_id="c1", now=at(0), expires_at=at(10))
    assert await store.control.elect("m", client_id="c1", now=at(6), expires_at=at(16))
    await store.control.elect("m", client_id="c1", now=at(3), expires_at=at(13))  # the late one
    assert await store.control.get_leader("m") == delta_leader("c1", at(0), at(16))
    assert not await store.control.elect("m", client_id="c2", now=at(14), expires_at=at(24))


async def test_only_the_leader_can_resign(store: Store) -> None:
    await store.control.elect("m", client_id="c1", now=at(0), expires_at=at(10))
    await store.control.resign("m", client_id="c2")
    assert await store.control.get_leader("m") is not None
    await store.control.resign("m", client_id="c1")
    assert await store.control.get_leader("m") is None
    assert await store.control.elect("m", client_id="c2", now=at(1), expires_at=at(10))


def delta_leader(leader_id: str, elected_at: datetime, expires_at: datetime) -> LeaderState:
    return LeaderState(leader_id, elected_at, expires_at)


# -- maintenance ------------------------------------------------------------------


async def test_rescue_fails_rows_stuck_pending_and_degrades_the_exhausted(store: Store) -> None:
    await upsert(
        store,
        [prep(Item("old")), prep(Item("last"), max_attempts=1), prep(Item("young"))],
        now=at(0),
    )
    await claim(store, at(1), limit=2)  # old, last
    await claim(store, at(5))  # young
    async with store.queue.listen() as listener:
        n = await rescue(store, now=at(10), stuck_before=at(5), limit=10, error="stuck")
        assert n == 2
        assert await next_payload(listener) == "default"
    old, last, young = [await get(store, k) for k in ("old", "last", "young")]
    assert (old.state, old.scheduled_at, old.updated_at, old.attempt) == (
        S.FAILED,
        at(10),
        at(10),
        1,
    )
    assert old.errors == (AttemptError(at(10), 1, "stuck", ""),)
    assert (last.state, len(last.errors)) == (S.DEGRADED, 1)
    assert young.state is S.PENDING
    assert [r.object_id for r in await claim(store, at(10))] == ["old"]


async def test_rescue_takes_the_longest_stuck_first_up_to_the_limit(store: Store) -> None:
    for i, key in enumerate("abc"):
        await upsert(store, [prep(Item(key))], now=at(0))
        await claim(store, at(3 - i))  # c claimed first, a last
    assert await rescue(store, now=at(10), stuck_before=at(10), limit=2, error="stuck") == 2
    assert [(await get(store, k)).state for k in "abc"] == [S.PENDING, S.FAILED, S.FAILED]


async def test_rescue_skips_rows_held_by_an_open_transaction(store: Store) -> None:
    await upsert(store, [prep(Item("a", 1)), prep(Item("b"))], now=at(0))
    await claim(store, at(1))
    async with store.queue.transaction() as tx:
        await upsert(store, [prep(Item("a", 2))], now=at(2), tx=tx)
        assert await rescue(store, now=at(10), stuck_before=at(10), limit=10, error="x") == 1
    assert (await get(store, "a")).state is S.PENDING


async def test_expire_turns_old_synced_rows_of_a_namespace_claimable(store: Store) -> None:
    for i, key in enumerate("abc"):
        await upsert(store, [prep(Item(key))], now=at(0))
        rec = await claim_one(store, at(1))
        await complete(store, [outcome(rec, OutcomeKind.SYNCED)], now=at(4 - i), client_id=CLIENT)
    await synced_row(store, prep(Item("other"), namespace="other"))
    assert await store.control.expire("default", now=at(10), synced_before=at(4), limit=1) == 1
    assert [(await get(store, k)).state for k in "abc"] == [S.SYNCED, S.SYNCED, S.EXPIRED]
    assert await store.control.expire("default", now=at(11), synced_before=at(4), limit=10) == 1
    c, b = await get(store, "c"), await get(store, "b")
    assert (c.scheduled_at, c.updated_at, b.state, b.scheduled_at) == (
        at(10),
        at(10),
        S.EXPIRED,
        at(11),
    )
    assert (await get(store, "a")).state is S.SYNCED
    assert (await get(store, "other")).state is S.SYNCED


async def test_clean_deletes_old_rows_of_one_state_and_namespace(store: Store) -> None:
    await upsert(
        store, [prep(Item(k)) for k in "abcd"] + [prep(Item("o"), namespace="other")], now=at(0)
    )
    recs = await claim(store, at(1), limit=3)
    await complete(
        store, [outcome(r, OutcomeKind.DELETED) for r in recs], now=at(2), client_id=CLIENT
    )
    await upsert(store, [prep(Item("o"), namespace="other")], now=at(3))
    assert await store.control.clean("default", S.DELETED, updated_before=at(2), limit=10) == 0
    assert await store.control.clean("default", S.DELETED, updated_before=at(3), limit=2) == 2
    assert await store.control.clean("default", S.DELETED, updated_before=at(3), limit=2) == 1
    assert [r.object_id for r in await store.insights.list_resources(ResourceFilter())] == [
        "d",
        "o",
    ]
    assert (
        await complete(store, [outcome(recs[0], OutcomeKind.SYNCED)], now=at(4), client_id=CLIENT)
        == []
    )
    # A cleaned row comes back as a new one, with a new id.
    (result,) = await upsert(store, [prep(Item("a"))], now=at(5))
    assert (result.already_exists, result.resource.id > recs[-1].id) == (False, True)


async def test_a_users_transaction_waits_on_locks_as_the_database_says(
    pg_dsn: str, schema: str
) -> None:
    # Pooled connections bound our own lock waits (a session setting); the
    # user's statements in a transaction of theirs keep the database's own.
    async with open_postgres_store(pg_dsn, schema=schema, pool_size=2, lock_timeout=3.0) as pg:
        async with pg.queue.transaction() as tx:
            assert await tx.execute("show lock_timeout") == [("0",)]
        async with pg.connections.pool.connection() as conn:
            cur = await conn.execute("show lock_timeout")
            assert await cur.fetchone() == ("3s",)


@pytest.mark.parametrize(("async_commit", "expected"), [(True, "off"), (False, "on")])
async def test_async_commit_decides_how_the_hot_lanes_commit(
    pg_dsn: str, schema: str, async_commit: bool, expected: str
) -> None:
    async with open_postgres_store(
        pg_dsn, schema=schema, pool_size=2, async_commit=async_commit
    ) as pg:
        for lane in ("claim", "complete", "leader"):
            rows = await pg.connections.execute(lane, "database_now", {}, "now")
            assert rows  # the lane is open
            (setting,) = await pg.connections.on_lane(lane, _show_synchronous_commit, "show")
            assert setting == expected, lane
        # Informs always wait for the WAL flush.
        (setting,) = await pg.connections.on_lane("inform", _show_synchronous_commit, "show")
        assert setting == "on"


async def _show_synchronous_commit(conn: Any) -> tuple[str]:
    cur = await conn.execute("show synchronous_commit")
    row = await cur.fetchone()
    assert row is not None
    return (row[0],)
