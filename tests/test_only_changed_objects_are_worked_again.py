"""Change detection: an unchanged object is not worked again, a changed one
is, and with ``compare`` an older object never overwrites a newer one."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import trio

import trio_delta as delta

from .models import (
    Note,
    NoteController,
    RecordingController,
    User,
    controllers_for,
    wait_for_state,
    wait_until,
)

S = delta.ResourceState
QUIET = 0.6  # three poll intervals: long enough for an unwanted re-work to show


@dataclass
class Doc:
    kind: ClassVar[str] = "doc"
    key: str
    body: Any = None

    def id(self) -> str:
        return self.key


class DocController(delta.Controller[Doc]):
    def __init__(self) -> None:
        self.worked: list[Any] = []

    async def work(self, resource: delta.Resource[Doc]) -> None:
        self.worked.append(resource.object.body)


async def test_unchanged_synced_object_is_not_worked_again(
    pg_dsn: str, config: delta.Config
) -> None:
    controller = RecordingController()
    async with delta.open_delta_client(pg_dsn, controllers_for(controller), config=config) as c:
        await c.inform(User("same@x.io", "Same", 1))
        synced = await wait_for_state(c, "user", "same@x.io", S.SYNCED)

        again = await c.inform(User("same@x.io", "Same", 1))
        assert again.changed is False
        assert again.already_exists is True
        assert again.resource.state is S.SYNCED
        assert again.resource.id == synced.id
        await trio.sleep(QUIET)
        row = await c.get_resource("user", "same@x.io")
    assert row is not None
    assert row.state is S.SYNCED
    assert row.synced_at == synced.synced_at
    assert controller.worked == [("same@x.io", 1)]


async def test_changed_object_is_worked_again(pg_dsn: str, config: delta.Config) -> None:
    controller = RecordingController()
    async with delta.open_delta_client(pg_dsn, controllers_for(controller), config=config) as c:
        await c.inform(User("chg@x.io", "Before", 1))
        first = await wait_for_state(c, "user", "chg@x.io", S.SYNCED)

        result = await c.inform(User("chg@x.io", "After", 2))
        assert result.changed is True
        assert result.already_exists is True
        # Scheduled, or already claimed by the inform itself when the
        # client was idle (Config.claim_on_inform): attempts start over.
        assert (result.resource.state, result.resource.attempt) in {
            (S.SCHEDULED, 0),
            (S.PENDING, 1),
        }

        async def worked_twice() -> bool:
            return len(controller.worked) == 2

        await wait_until(worked_twice)
        second = await wait_for_state(c, "user", "chg@x.io", S.SYNCED)
    assert second.object == User("chg@x.io", "After", 2)
    assert second.id == first.id
    assert first.synced_at is not None
    assert second.synced_at is not None
    assert second.synced_at > first.synced_at


async def test_older_object_never_overwrites_newer_one(pg_dsn: str, config: delta.Config) -> None:
    controller = RecordingController()
    async with delta.open_delta_client(pg_dsn, controllers_for(controller), config=config) as c:
        await c.inform(User("cmp@x.io", "Newest", 5))
        await wait_for_state(c, "user", "cmp@x.io", S.SYNCED)

        stale = await c.inform(User("cmp@x.io", "Stale", 3))
        assert stale.changed is False
        assert stale.already_exists is True
        assert stale.resource.object == User("cmp@x.io", "Newest", 5)
        await trio.sleep(QUIET)
        row = await c.get_resource("user", "cmp@x.io")
        assert row is not None
        assert row.object == User("cmp@x.io", "Newest", 5)
        assert row.state is S.SYNCED

        newer = await c.inform(User("cmp@x.io", "Newer", 6))
        assert newer.changed is True
        row = await wait_for_state(c, "user", "cmp@x.io", S.SYNCED)
        assert row.object == User("cmp@x.io", "Newer", 6)
        assert controller.worked == [("cmp@x.io", 1), ("cmp@x.io", 1)]


async def test_older_object_is_ignored_before_the_newer_one_is_worked(
    pg_dsn: str, config: delta.Config
) -> None:
    controller = RecordingController()
    controller.block = trio.Event()
    async with delta.open_delta_client(pg_dsn, controllers_for(controller), config=config) as c:
        await c.inform(User("first@x.io", "Blocker"))
        with trio.fail_after(5):
            await controller.started.wait()
        # max_workers is 10, so this one could be claimed too: keep it a
        # scheduled row by informing into a namespace this client does not serve
        opts = delta.InformOpts(namespace="elsewhere")
        await c.inform(User("race@x.io", "New", 10), opts)
        stale = await c.inform(User("race@x.io", "Old", 9), opts)
        assert stale.changed is False
        row = await c.get_resource("user", "race@x.io")
        assert row is not None
        assert row.object == User("race@x.io", "New", 10)
        assert row.state is S.SCHEDULED
        controller.block.set()


async def test_objects_without_compare_use_content_and_key_order_does_not_matter(
    pg_dsn: str, config: delta.Config
) -> None:
    notes, docs = NoteController(), DocController()
    async with delta.open_delta_client(pg_dsn, controllers_for(notes, docs), config=config) as c:
        await c.inform(Note("n1", "one"))
        await c.inform(Doc("d1", {"a": 1, "b": [1, 2], "c": {"x": None, "y": 1.5}}))
        await wait_for_state(c, "note", "n1", S.SYNCED)
        await wait_for_state(c, "doc", "d1", S.SYNCED)

        assert (await c.inform(Note("n1", "one"))).changed is False
        # the same JSON with keys in another order is the same object
        same = await c.inform(Doc("d1", {"c": {"y": 1.5, "x": None}, "b": [1, 2], "a": 1}))
        assert same.changed is False
        # no compare: any different content is a change, whatever it looks like
        assert (await c.inform(Note("n1", "older?"))).changed is True
        await wait_for_state(c, "note", "n1", S.SYNCED)
        assert (await c.inform(Doc("d1", {"a": 1, "b": [2, 1]}))).changed is True
        await wait_for_state(c, "doc", "d1", S.SYNCED)
        await trio.sleep(QUIET)
    assert notes.worked == ["n1", "n1"]
    assert len(docs.worked) == 2
