"""What the dashboard reads, the same on both stores: a text-in-id filter
that every resource query honours, and recent activity (syncs per minute,
clients holding work)."""

from __future__ import annotations

from datetime import timedelta

from trio_delta._store.params import Change, OutcomeKind, ResourceFilter
from trio_delta._store.port import Store

from .test_store_conformance import (
    CLIENT,
    Item,
    S,
    at,
    claim,
    complete,
    outcome,
    prep,
    upsert,
)


async def test_id_contains_narrows_lists_counts_and_changes(store: Store) -> None:
    keys = ["order-1", "order-12", "refund-1", "<b>order</b>"]
    await upsert(store, [prep(Item(k)) for k in keys], now=at(0))

    async def listed(text: str | None, **kw: object) -> list[str]:
        flt = ResourceFilter(id_contains=text, **kw)  # type: ignore[arg-type]
        return [r.object_id for r in await store.insights.list_resources(flt)]

    assert await listed("order") == ["order-1", "order-12", "<b>order</b>"]
    assert await listed("-1") == ["order-1", "order-12", "refund-1"]
    assert await listed("ORDER") == []  # case sensitive
    assert await listed("%") == []  # no pattern characters
    assert await listed("") == keys
    assert await listed("order", limit=1, after_id=1) == ["order-12"]

    counts = await store.insights.count_states(ResourceFilter(id_contains="order-"), at(0))
    assert sum(c.count for c in counts) == 2
    deleted = await store.insights.change(
        Change.DELETE, ResourceFilter(id_contains="refund"), now=at(1)
    )
    assert [(r.object_id, r.state) for r in deleted] == [("refund-1", S.DELETED)]


async def test_activity_counts_syncs_per_minute_and_working_clients(store: Store) -> None:
    await upsert(store, [prep(Item(f"k{i}")) for i in range(5)], now=at(0))
    first = await claim(store, at(1), limit=2, client_id="client-b")
    await complete(
        store, [outcome(r, OutcomeKind.SYNCED) for r in first], now=at(61), client_id="client-b"
    )
    second = await claim(store, at(62), limit=1)
    await complete(store, [outcome(second[0], OutcomeKind.SYNCED)], now=at(130), client_id=CLIENT)
    await claim(store, at(131), limit=1)  # held by client-a
    await claim(store, at(131), limit=1, client_id="client-c")

    activity = await store.insights.activity(at(0), ["default"])
    minute = at(0).replace(second=0, microsecond=0)
    assert activity.synced_per_minute == (
        (minute + timedelta(minutes=1), 2),
        (minute + timedelta(minutes=2), 1),
    )
    assert activity.working == ((CLIENT, 1), ("client-c", 1))
    later = await store.insights.activity(at(120), ["default"])
    assert later.synced_per_minute == ((minute + timedelta(minutes=2), 1),)
    elsewhere = await store.insights.activity(at(0), ["other"])
    assert elsewhere.synced_per_minute == ()
    # Only resources synced now count: one informed again (changed) leaves.
    await upsert(store, [prep(Item("k0", value=9))], now=at(140))
    again = await store.insights.activity(at(0), ["default"])
    assert sum(n for _, n in again.synced_per_minute) == 2
