"""Both stores keep pauses (a kind, a namespace, or a kind in a namespace)
and tell every client when they change; deleting a resource whose work is
running tells its client to cancel that work; a cluster-wide cap counts
every client's pending rows of its kind."""

from __future__ import annotations

import pytest

import trio_delta as delta
from trio_delta._store.params import (
    Change,
    ClaimRequest,
    ClusterLimit,
    OutcomeKind,
    Pause,
    ResourceFilter,
    check_pause_target,
)
from trio_delta._store.port import Store

from .test_store_conformance import (
    CLIENT,
    Gadget,
    Item,
    at,
    claim_one,
    complete,
    next_payload,
    outcome,
    prep,
    upsert,
)


async def test_pauses_are_kept_listed_and_removed(store: Store) -> None:
    assert await store.control.list_pauses() == []
    assert await store.control.pause(Pause("item", None, at(0), "c1")) is True
    assert await store.control.pause(Pause("item", None, at(1), "c2")) is False  # already
    assert await store.control.pause(Pause(None, "blue", at(2), "c1")) is True
    assert await store.control.pause(Pause("item", "blue", at(3), "c1")) is True
    assert await store.control.list_pauses() == [
        Pause(None, "blue", at(2), "c1"),
        Pause("item", None, at(0), "c1"),
        Pause("item", "blue", at(3), "c1"),
    ]
    assert await store.control.resume("item", None) is True
    assert await store.control.resume("item", None) is False
    assert [(p.kind, p.namespace) for p in await store.control.list_pauses()] == [
        (None, "blue"),
        ("item", "blue"),
    ]


async def test_every_listener_hears_a_pause_and_a_resume(store: Store) -> None:
    async with store.queue.listen() as listener:
        await store.control.pause(Pause("item", None, at(0), CLIENT))
        assert await next_payload(listener) == "pause:"
        await store.control.resume("item", None)
        assert await next_payload(listener) == "pause:"


async def test_deleting_a_running_resource_names_it_to_its_client(store: Store) -> None:
    await upsert(store, [prep(Item("running")), prep(Item("idle"))], now=at(0))
    running = await claim_one(store, at(1), limit=1)
    async with store.queue.listen() as listener:
        flt = ResourceFilter(kind="item", object_ids=("idle", running.object_id))
        rows = await store.insights.change(Change.DELETE, flt, now=at(2))
        assert sorted(r.object_id for r in rows) == ["idle", "running"]
        assert {r.state for r in rows} == {delta.ResourceState.DELETED}
        # Only the running one: nothing else has a worker to stop.
        assert await next_payload(listener) == f"cancel:{running.id}"


def test_a_pause_names_a_kind_a_namespace_or_both() -> None:
    assert check_pause_target("item", None) == ("item", None)
    assert check_pause_target(None, "blue") == (None, "blue")
    with pytest.raises(delta.ConfigError, match="neither"):
        check_pause_target(None, None)
    with pytest.raises(delta.ConfigError):
        check_pause_target("Not A Kind", None)


def test_a_pause_covers_what_it_names() -> None:
    pauses = {"kind": Pause("a", None), "namespace": Pause(None, "n"), "both": Pause("a", "n")}
    asked = [("a", "n"), ("a", "m"), ("b", "n"), ("a", None)]
    covered = {name: [p.covers(*q) for q in asked] for name, p in pauses.items()}
    assert covered == {
        "kind": [True, True, False, True],  # a kind pause also stops its informer
        "namespace": [True, False, True, False],
        "both": [True, False, False, False],
    }


async def test_a_cluster_cap_counts_every_clients_pending_rows(store: Store) -> None:
    await upsert(store, [prep(Item(f"i{n}")) for n in range(6)], now=at(0))
    await upsert(store, [prep(Gadget(f"g{n}")) for n in range(3)], now=at(0))
    capped = {"item": None, "gadget": None}
    cap = {"item": ClusterLimit(cap=3)}
    first = await store.queue.claim(
        [ClaimRequest("default", 2, capped, cap)],
        now=at(1),
        client_id="c1",
    )
    assert [r.kind for r in first] == ["item", "item"]
    # Another client: one more item fits under the cap; gadgets are not capped.
    second = await store.queue.claim(
        [ClaimRequest("default", 10, capped, cap)],
        now=at(1),
        client_id="c2",
    )
    assert sorted(r.kind for r in second) == ["gadget"] * 3 + ["item"]
    third = await store.queue.claim(
        [ClaimRequest("default", 10, capped, cap)],
        now=at(1),
        client_id="c3",
    )
    assert third == []
    # A finished work frees its place.
    await complete(store, [outcome(first[0], OutcomeKind.SYNCED)], now=at(2), client_id="c1")
    fourth = await store.queue.claim(
        [ClaimRequest("default", 10, capped, cap)],
        now=at(2),
        client_id="c3",
    )
    assert [r.kind for r in fourth] == ["item"]


async def test_a_rate_limit_is_a_token_bucket_shared_by_every_client(store: Store) -> None:
    await upsert(store, [prep(Item(f"i{n}")) for n in range(40)], now=at(0))
    limited = {"item": ClusterLimit(per_second=10.0, burst=4)}

    async def claim_as(client: str, seconds: float, limit: int = 100) -> int:
        rows = await store.queue.claim(
            [ClaimRequest("default", limit, {"item": None}, limited)],
            now=at(seconds),
            client_id=client,
        )
        return len(rows)

    assert await claim_as("c1", 0) == 4  # a new bucket is full: the burst
    assert await claim_as("c2", 0) == 0  # empty, for every client
    assert await claim_as("c2", 0.25) == 2  # 2.5 tokens refilled
    assert await claim_as("c1", 0.35) == 1  # 0.5 left + 1.0
    assert await claim_as("c3", 10) == 4  # refills up to the burst, no further
    assert await claim_as("c3", 10.5, limit=2) == 2  # what is asked, when less
    assert await claim_as("c1", 10.5) == 2  # the rest (the burst, less 2) stays


async def test_not_pending_names_rows_deleted_or_gone(store: Store) -> None:
    await upsert(store, [prep(Item(k)) for k in ("a", "b", "c")], now=at(0))
    claimed = await store.queue.claim(
        [ClaimRequest("default", 3, {"item": None})], now=at(1), client_id=CLIENT
    )
    ids = sorted(r.id for r in claimed)
    assert await store.queue.not_pending(ids) == []
    deleted = ResourceFilter(kind="item", object_ids=("b",))
    await store.insights.change(Change.DELETE, deleted, now=at(2))
    b = next(r.id for r in claimed if r.object_id == "b")
    assert await store.queue.not_pending([*ids, 999]) == [b, 999]
