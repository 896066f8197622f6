"""An object informed alone is written by its own statement (scalar
parameters, the single inform's), one in a batch by the array statement:
both stores write, update, claim and report it alike, for every option an
object carries."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from trio_delta._objects import PreparedObject, prepare_object
from trio_delta._store.params import UpsertParams
from trio_delta._store.port import Store
from trio_delta._store.postgres.statements import Target, upsert_plan
from trio_delta._store.queries import Queries
from trio_delta._types import InformOpts, InformResult, ResourceRow

from .test_store_conformance import CLIENT, Item, at

#: Options an object may carry, each written alone and in a batch: first,
#: and then with the object changed.
OPTIONS: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "plain": ({}, {}),
    "namespace": ({"namespace": "elsewhere"}, {"namespace": "moved"}),
    "metadata": ({"metadata": {"traceparent": "00-ab-cd-01", "n": 2}}, {"metadata": {"n": 3}}),
    "tags": ({"tags": ["red", "big"]}, {"tags": ["blue"]}),
    "max_attempts": ({"max_attempts": 3}, {"max_attempts": 7}),
    "priority": ({"priority": 4}, {"priority": 9}),
    "priority kept": ({"priority": 4}, {}),
    "later": ({"run_at": at(60)}, {"run_at": at(90)}),
}
#: What may differ between the two rows: which object, and its number.
OWN = ("id", "object_id", "encoded_object", "hash")


def item(key: str, value: int, opts: dict[str, Any]) -> PreparedObject:
    return prepare_object(Item(key, value), InformOpts(**opts), default_max_attempts=5)


def comparable(row: ResourceRow[Any] | None) -> dict[str, Any]:
    assert row is not None
    fields = {name: getattr(row, name) for name in row.__dataclass_fields__}
    return {name: value for name, value in fields.items() if name not in OWN}


async def write(
    store: Store, obj: PreparedObject, seconds: float, **params: Any
) -> InformResult[Any]:
    """``obj`` written alone; the same object keyed ``+batch`` beside a
    filler, in one statement; both results, and both rows as stored, must
    agree."""
    twin = replace(obj, object_id=obj.object_id + "+batch")
    filler = replace(obj, object_id=obj.object_id + "+filler")
    (alone,) = await store.queue.upsert([obj], UpsertParams(at(seconds), **params))
    batched, _ = await store.queue.upsert([twin, filler], UpsertParams(at(seconds), **params))
    assert comparable(alone.resource) == comparable(batched.resource)
    read = store.insights.get_resource
    stored = await read(obj.kind, obj.object_id), await read(twin.kind, twin.object_id)
    assert comparable(stored[0]) == comparable(stored[1])
    assert (alone.already_exists, alone.changed) == (batched.already_exists, batched.changed)
    return alone


@pytest.mark.parametrize("name", OPTIONS)
async def test_a_new_object_is_written_alike(store: Store, name: str) -> None:
    result = await write(store, item(name, 1, OPTIONS[name][0]), 1)
    assert not result.already_exists


@pytest.mark.parametrize("name", OPTIONS)
async def test_a_changed_and_an_unchanged_object_are_written_alike(store: Store, name: str) -> None:
    first, then = OPTIONS[name]
    await write(store, item(name, 1, first), 1)
    changed = await write(store, item(name, 2, then), 2)
    assert (changed.already_exists, changed.changed) == (True, True)
    unchanged = await write(store, item(name, 2, then), 3)
    assert (unchanged.already_exists, unchanged.changed) == (True, False)
    reprocessed = await write(store, item(name, 2, then), 4, process_existing=True)
    assert reprocessed.changed


@pytest.mark.parametrize("name", OPTIONS)
async def test_a_claiming_write_is_written_alike(store: Store, name: str) -> None:
    result = await write(store, item(name, 1, OPTIONS[name][0]), 1, claim_by=CLIENT)
    due = "run_at" not in OPTIONS[name][0]
    assert (result.resource.attempted_by == CLIENT) is due


def test_one_object_goes_out_as_the_single_statement() -> None:
    queries = Queries("s")
    target = Target(queries, "channel")

    def statements(count: int) -> tuple[Any, ...]:
        items = [item(f"o{n}", 1, {}) for n in range(count)]
        return upsert_plan(target, items, UpsertParams(at(0))).send(None)

    (one,) = statements(1)
    assert one.query is queries["upsert_one"]
    assert one.params["object_id"] == "o0"
    (many,) = statements(2)
    assert many.query is queries["upsert"]
