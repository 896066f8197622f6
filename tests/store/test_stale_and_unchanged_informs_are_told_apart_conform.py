"""Both stores' results let an inform that wrote nothing be told apart:
unchanged (the object as stored) or stale (older than the stored one, by
its compare), as the ``trio_delta_informs_total`` metric counts them."""

from __future__ import annotations

from trio_delta._informing import inform_counts
from trio_delta._store.params import UpsertParams
from trio_delta._store.port import Store

from .test_store_conformance import Item, at, by_value, prep


async def test_each_result_is_counted_by_what_it_did(store: Store) -> None:
    counts = []
    stale = []
    for seconds, value in enumerate((5, 5, 1, 6)):  # new, unchanged, stale, changed
        item = prep(Item("a", value))
        results = await store.queue.upsert([item], UpsertParams(at(seconds), is_stale=by_value))
        counts.append(dict(inform_counts([item], results)))
        stale.append(results[0].stale)
    assert stale == [False, False, True, False]
    assert counts == [
        {("item", "new"): 1},
        {("item", "unchanged"): 1},
        {("item", "stale"): 1},
        {("item", "changed"): 1},
    ]


async def test_an_object_no_stale_check_rejected_is_never_stale(store: Store) -> None:
    # Unchanged while a different object is stored is not stale: the same
    # key twice in one call is written once, as its last version.
    await store.queue.upsert([prep(Item("a", 0))], UpsertParams(at(0)))
    first, last = prep(Item("a", 1)), prep(Item("a", 0))
    (result,) = await store.queue.upsert([first, last], UpsertParams(at(1)))
    assert (result.changed, result.stale) == (False, False)
