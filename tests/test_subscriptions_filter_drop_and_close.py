"""``client.subscribe(*categories)``: a subscriber receives exactly the events
of its categories (``OBJECT_FAILED`` also for degraded), each with the
resource row and a timestamp; a subscriber that does not read loses events
beyond ``config.event_buffer``, counted in ``dropped``, without slowing the
workers; leaving the ``with`` block ends iteration; unknown categories are
rejected with ``ConfigError``."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import ClassVar

import pytest
import trio

import trio_delta as delta

from .conftest import sql
from .helpers import wait_until

C = delta.EventCategory
S = delta.ResourceState


@dataclass
class Item:
    kind: ClassVar[str] = "item"
    key: str
    outcome: str = "sync"  # "sync" | "fail" | "delete"

    def id(self) -> str:
        return self.key


class ItemController(delta.Controller[Item]):
    async def work(self, resource: delta.Resource[Item]) -> None:
        if resource.object.outcome == "fail":
            raise RuntimeError("always fails")
        if resource.object.outcome == "delete":
            raise delta.ResourceDelete("gone")


def controllers() -> delta.Controllers:
    out = delta.Controllers()
    delta.add_controller(out, ItemController())
    return out


def config_for(schema: str, **overrides: object) -> delta.Config:
    return delta.Config(
        schema=schema, poll_interval=0.2, retry_policy=lambda attempt: 0.05, **overrides
    )  # type: ignore[arg-type]


def db_now(dsn: str) -> datetime:
    return sql(dsn, "select now()")[0][0]


def drain(sub: delta.Subscription) -> list[delta.Event]:
    events: list[delta.Event] = []
    while True:
        try:
            events.append(sub.receive_nowait())
        except trio.WouldBlock:
            return events


def final_states(dsn: str, schema: str) -> dict[str, str]:
    return dict(sql(dsn, f"select object_id, state from {schema}.resources"))


async def test_each_subscriber_gets_only_its_categories(pg_dsn: str, schema: str) -> None:
    async with delta.open_delta_client(pg_dsn, controllers(), config=config_for(schema)) as client:
        with (
            client.subscribe(C.OBJECT_SYNCED) as synced,
            client.subscribe(C.OBJECT_FAILED) as failed,
            client.subscribe(C.OBJECT_DELETED) as deleted,
            client.subscribe(C.OBJECT_SYNCED, C.OBJECT_DELETED) as two,
            client.subscribe() as everything,
        ):
            started = db_now(pg_dsn)
            await client.inform(Item("ok-1"))
            await client.inform(Item("ok-2"))
            await client.inform(Item("bad-1", "fail"), delta.InformOpts(max_attempts=2))
            await client.inform(Item("del-1", "delete"))
            await wait_until(
                lambda: (
                    final_states(pg_dsn, schema)
                    == {"ok-1": "synced", "ok-2": "synced", "bad-1": "degraded", "del-1": "deleted"}
                )
            )
            subs = {
                "synced": synced,
                "failed": failed,
                "deleted": deleted,
                "two": two,
                "everything": everything,
            }
            got: dict[str, list[delta.Event]] = {name: [] for name in subs}

            def collected_all() -> bool:
                for name, sub in subs.items():
                    got[name] += drain(sub)
                return len(got["everything"]) >= 5

            # events are published once the outcome is written
            await wait_until(collected_all, within=2)
            finished = db_now(pg_dsn)
            await trio.sleep(0.3)  # room for any extra, unexpected event
            collected_all()

    def summary(events: list[delta.Event]) -> list[tuple[str, str, str, int]]:
        return sorted(
            (e.category.value, e.resource.object_id, e.resource.state.value, e.resource.attempt)
            for e in events
        )

    assert summary(got["synced"]) == [
        ("object_synced", "ok-1", "synced", 1),
        ("object_synced", "ok-2", "synced", 1),
    ]
    # a failed attempt, then the degraded one: both OBJECT_FAILED, in order
    assert [(e.category, e.resource.state, e.resource.attempt) for e in got["failed"]] == [
        (C.OBJECT_FAILED, S.FAILED, 1),
        (C.OBJECT_FAILED, S.DEGRADED, 2),
    ]
    assert summary(got["deleted"]) == [("object_deleted", "del-1", "deleted", 1)]
    assert summary(got["two"]) == sorted(summary(got["synced"]) + summary(got["deleted"]))
    assert summary(got["everything"]) == sorted(
        summary(got["synced"]) + summary(got["failed"]) + summary(got["deleted"])
    )
    for event in got["everything"]:
        assert isinstance(event.resource, delta.ResourceRow)
        assert event.resource.object == Item(
            event.resource.object_id, event.resource.object.outcome
        )
        assert event.timestamp.tzinfo is not None
        slack = timedelta(seconds=1)
        assert started - slack <= event.timestamp <= finished + slack, event
    degraded = got["failed"][-1].resource
    assert [e.attempt for e in degraded.errors] == [1, 2]
    assert all("always fails" in e.error for e in degraded.errors)
    assert synced.dropped == failed.dropped == deleted.dropped == everything.dropped == 0


async def test_a_subscriber_that_does_not_read_drops_and_counts(pg_dsn: str, schema: str) -> None:
    n = 20
    async with delta.open_delta_client(
        pg_dsn, controllers(), config=config_for(schema, event_buffer=2)
    ) as client:
        with client.subscribe(C.OBJECT_SYNCED) as sub:
            async with client.transaction() as tx:
                for i in range(n):
                    await client.inform_tx(tx, Item(f"item-{i:02d}"))

            # the workers are not held up by the full subscriber
            def all_synced() -> bool:
                return list(final_states(pg_dsn, schema).values()) == ["synced"] * n

            await wait_until(all_synced, within=10)
            await wait_until(lambda: sub.dropped == n - 2, within=2)
            kept = drain(sub)
    assert len(kept) == 2
    assert all(e.category is C.OBJECT_SYNCED for e in kept)
    assert sub.dropped == n - 2


async def test_leaving_the_with_block_ends_iteration(pg_dsn: str, schema: str) -> None:
    received: list[str] = []
    ended = trio.Event()

    async def read(sub: delta.Subscription) -> None:
        async for event in sub:
            received.append(event.resource.object_id)
        ended.set()

    async with (
        delta.open_delta_client(pg_dsn, controllers(), config=config_for(schema)) as client,
        trio.open_nursery() as nursery,
    ):
        with client.subscribe(C.OBJECT_SYNCED) as sub:
            nursery.start_soon(read, sub)
            await client.inform(Item("before"))
            await wait_until(lambda: received == ["before"])
        with trio.fail_after(1):
            await ended.wait()  # the iteration finished by itself
        with pytest.raises(trio.EndOfChannel):
            await sub.receive()
        # events after unsubscribing go nowhere
        await client.inform(Item("after"))
        await wait_until(lambda: final_states(pg_dsn, schema).get("after") == "synced")
    assert received == ["before"]
    assert sub.dropped == 0


async def test_unknown_category_is_rejected(pg_dsn: str, schema: str) -> None:
    async with delta.open_delta_client(pg_dsn, controllers(), config=config_for(schema)) as client:
        with (
            pytest.raises(delta.ConfigError, match="object_created"),
            client.subscribe("object_created"),
        ):  # type: ignore[arg-type]
            pass
        with pytest.raises(delta.ConfigError), client.subscribe(C.OBJECT_SYNCED, "nope"):  # type: ignore[arg-type]
            pass
        # a known category given by its value is fine
        with client.subscribe("object_synced") as sub:  # type: ignore[arg-type]
            assert sub.categories == frozenset({C.OBJECT_SYNCED})
