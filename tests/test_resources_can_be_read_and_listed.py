"""``get_resource`` and ``list_resources``: filters by kind, namespace and
state, ordered by id, paged with ``limit`` and ``after_id``."""

from __future__ import annotations

import trio_delta as delta

from .models import Note, RecordingController, User, controllers_for, wait_until

S = delta.ResourceState


async def _populate(c: delta.Client) -> None:
    """Users in "default" get worked (synced); notes have no controller in
    this client and stay scheduled, some in another namespace."""
    for i in range(5):
        await c.inform(User(f"u{i}@x.io", f"U{i}", i))
    for i in range(4):
        await c.inform(Note(f"n{i}", f"text {i}"))
    for i in range(3):
        await c.inform(Note(f"other{i}"), delta.InformOpts(namespace="other", tags=["abc"]))

    async def users_synced() -> bool:
        return len(await c.list_resources(kind="user", state=S.SYNCED)) == 5

    await wait_until(users_synced)


async def test_list_resources_filters_and_orders_by_id(pg_dsn: str, config: delta.Config) -> None:
    async with delta.open_delta_client(
        pg_dsn, controllers_for(RecordingController()), config=config
    ) as c:
        await _populate(c)
        every = await c.list_resources()
        users = await c.list_resources(kind="user")
        notes = await c.list_resources(kind="note")
        other = await c.list_resources(namespace="other")
        default_notes = await c.list_resources(kind="note", namespace="default")
        synced = await c.list_resources(state=S.SYNCED)
        scheduled = await c.list_resources(state="scheduled")
        other_scheduled_notes = await c.list_resources(
            kind="note", namespace="other", state=S.SCHEDULED
        )
        none = await c.list_resources(kind="user", state=S.DEGRADED)
        nobody = await c.list_resources(kind="nobody")

    ids = [r.id for r in every]
    assert len(every) == 12
    assert ids == sorted(ids)
    assert len(set(ids)) == 12
    assert [r.object_id for r in users] == [f"u{i}@x.io" for i in range(5)]
    assert all(r.object == User(f"u{i}@x.io", f"U{i}", i) for i, r in enumerate(users))
    assert [r.object_id for r in notes] == [f"n{i}" for i in range(4)] + [
        f"other{i}" for i in range(3)
    ]
    # no controller for notes here: their objects are the plain JSON
    assert notes[0].object == {"key": "n0", "text": "text 0"}
    assert [r.object_id for r in other] == ["other0", "other1", "other2"]
    assert all(r.namespace == "other" and tuple(r.tags) == ("abc",) for r in other)
    assert [r.object_id for r in default_notes] == ["n0", "n1", "n2", "n3"]
    assert {r.object_id for r in synced} == {f"u{i}@x.io" for i in range(5)}
    assert all(r.state is S.SYNCED for r in synced)
    assert {r.object_id for r in scheduled} == {r.object_id for r in notes}
    assert [r.object_id for r in other_scheduled_notes] == ["other0", "other1", "other2"]
    assert none == []
    assert nobody == []


async def test_list_resources_pages_with_limit_and_after_id(
    pg_dsn: str, config: delta.Config
) -> None:
    async with delta.open_delta_client(
        pg_dsn, controllers_for(RecordingController()), config=config
    ) as c:
        await _populate(c)
        every = await c.list_resources()
        pages: list[list[int]] = []
        after: int | None = None
        while True:
            page = await c.list_resources(limit=5, after_id=after)
            if not page:
                break
            assert len(page) <= 5
            pages.append([r.id for r in page])
            after = page[-1].id
        note_page = await c.list_resources(kind="note", limit=2, after_id=every[6].id)
        assert await c.list_resources(limit=0) == []
        assert await c.list_resources(after_id=every[-1].id) == []
    assert [len(p) for p in pages] == [5, 5, 2]
    assert [i for p in pages for i in p] == [r.id for r in every]
    expected_notes = [r.id for r in every if r.kind == "note" and r.id > every[6].id][:2]
    assert [r.id for r in note_page] == expected_notes


async def test_get_resource_finds_by_kind_and_id(pg_dsn: str, config: delta.Config) -> None:
    async with delta.open_delta_client(
        pg_dsn, controllers_for(RecordingController()), config=config
    ) as c:
        await _populate(c)
        user = await c.get_resource("user", "u3@x.io")
        note = await c.get_resource("note", "other1")
        assert await c.get_resource("user", "nobody@x.io") is None
        assert await c.get_resource("note", "u3@x.io") is None  # ids are per kind
        listed = {r.id: r for r in await c.list_resources()}
    assert user is not None
    assert note is not None
    assert user.object == User("u3@x.io", "U3", 3)
    assert user.state is S.SYNCED
    assert note.namespace == "other"
    assert note.state is S.SCHEDULED
    assert listed[user.id] == user
    assert listed[note.id] == note


BAD_LIST_ARGUMENTS: list[dict[str, object]] = [
    {"state": "bogus"},
    {"kind": "Bad Kind"},
    {"namespace": "no spaces"},
    {"limit": -1},
    {"after_id": -5},
    {"limit": True},
]


async def test_bad_list_arguments_are_config_errors(pg_dsn: str, config: delta.Config) -> None:
    accepted: list[dict[str, object]] = []
    async with delta.open_delta_client(
        pg_dsn, controllers_for(RecordingController()), config=config
    ) as c:
        for kwargs in BAD_LIST_ARGUMENTS:
            try:
                await c.list_resources(**kwargs)  # type: ignore[arg-type]
            except delta.ConfigError:
                pass
            else:
                accepted.append(kwargs)
    assert accepted == []
