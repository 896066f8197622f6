"""Invalid objects are rejected with ObjectError at inform time and nothing
is written to the database."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import pytest

import trio_delta as delta

from .conftest import sql
from .models import Note, NoteController, controllers_for


@dataclass
class Blob:
    kind: ClassVar[str] = "blob"
    key: str
    value: Any = None

    def id(self) -> str:
        return self.key


class BlobController(delta.Controller[Blob]):
    async def work(self, resource: delta.Resource[Blob]) -> None:
        pass


class Opaque:
    pass


BAD: dict[str, tuple[Any, delta.InformOpts | None]] = {
    "empty id": (Blob(""), None),
    "id of 255 chars": (Blob("x" * 255), None),
    "NUL in id": (Blob("a\x00b"), None),
    "lone surrogate in id": (Blob("a\ud800"), None),
    "NUL in a field": (Blob("k", "a\x00b"), None),
    "NUL in a nested key": (Blob("k", {"ok": [{"a\x00": 1}]}), None),
    "arbitrary object in a field": (Blob("k", Opaque()), None),
    "NaN float": (Blob("k", float("nan")), None),
    "infinite float nested": (Blob("k", [1.0, {"x": float("-inf")}]), None),
    "tag too short": (Blob("k"), delta.InformOpts(tags=["a"])),
    "tags as a string": (Blob("k"), delta.InformOpts(tags="abc")),
    "bad namespace": (Blob("k"), delta.InformOpts(namespace="Not Valid")),
    "zero max_attempts": (Blob("k"), delta.InformOpts(max_attempts=0)),
    "metadata not JSON": (Blob("k"), delta.InformOpts(metadata={"s": Opaque()})),
    "metadata with a non-str key": (Blob("k"), delta.InformOpts(metadata={1: "x"})),
}


def resource_count(dsn: str, schema: str) -> int:
    ((count,),) = sql(dsn, f"select count(*) from {schema}.resources")
    return count


async def test_bad_objects_raise_object_error_and_write_nothing(
    pg_dsn: str, schema: str, config: delta.Config
) -> None:
    accepted: list[str] = []
    async with delta.open_delta_client(
        pg_dsn, controllers_for(BlobController()), config=config
    ) as c:
        for case, (obj, opts) in BAD.items():
            try:
                await c.inform(obj, opts)
            except delta.ObjectError:
                pass
            else:
                accepted.append(f"inform: {case}")
            try:
                async with c.transaction() as tx:
                    await c.inform_tx(tx, obj, opts)
            except delta.ObjectError:
                pass
            else:
                accepted.append(f"inform_tx: {case}")
        assert await c.list_resources() == []
    assert accepted == []
    assert resource_count(pg_dsn, schema) == 0


async def test_rejected_object_does_not_spoil_the_users_transaction(
    pg_dsn: str, schema: str, config: delta.Config
) -> None:
    async with delta.open_delta_client(
        pg_dsn, controllers_for(BlobController()), config=config
    ) as c:
        async with c.transaction() as tx:
            with pytest.raises(delta.ObjectError):
                await c.inform_tx(tx, Blob("bad", {"x": float("nan")}))
            await c.inform_tx(tx, Blob("good", {"x": 1.5}))
        rows = await c.list_resources()
    assert [r.object_id for r in rows] == ["good"]
    assert resource_count(pg_dsn, schema) == 1


async def test_limits_are_inclusive(pg_dsn: str, schema: str, config: delta.Config) -> None:
    longest = "y" * 254
    async with delta.open_delta_client(
        pg_dsn, controllers_for(BlobController(), NoteController()), config=config
    ) as c:
        result = await c.inform(Blob(longest, "ok"), delta.InformOpts(tags=["abc", "t-1"]))
        assert result.resource.object_id == longest
        assert tuple(result.resource.tags) == ("abc", "t-1")
        await c.inform(Note("\u00e9\U0001f600 unicode id", "text with \\u0000 escapes"))
        assert await c.get_resource("blob", longest) is not None
        note = await c.get_resource("note", "\u00e9\U0001f600 unicode id")
        assert note is not None
        assert note.object == Note("\u00e9\U0001f600 unicode id", "text with \\u0000 escapes")
        # a NUL id can never exist: looked up, it is simply absent
        assert await c.get_resource("blob", "a\x00b") is None
    assert resource_count(pg_dsn, schema) == 2


@dataclass
class Tagged:
    kind: ClassVar[str] = "tagged"
    key: str
    labels: set[str]

    def id(self) -> str:
        return self.key


class TaggedController(delta.Controller[Tagged]):
    async def work(self, resource: delta.Resource[Tagged]) -> None:
        pass


async def test_set_in_untyped_field_is_stored_as_a_sorted_array(
    pg_dsn: str, schema: str, config: delta.Config
) -> None:
    # JSON has no sets: an untyped field's set is stored as a sorted array and
    # reads back as a list (documented; type the field set[...] to get a set).
    async with delta.open_delta_client(
        pg_dsn, controllers_for(BlobController()), config=config
    ) as c:
        await c.inform(Blob("k", {2, 1}))
        row = await c.get_resource("blob", "k")
    assert row is not None
    assert row.object == Blob("k", [1, 2])
    assert resource_count(pg_dsn, schema) == 1


async def test_set_in_a_set_typed_field_round_trips(pg_dsn: str, config: delta.Config) -> None:
    informed = Tagged("t", {"gamma", "alpha", "beta"})
    async with delta.open_delta_client(
        pg_dsn, controllers_for(TaggedController()), config=config
    ) as c:
        await c.inform(informed)
        row = await c.get_resource("tagged", "t")
        assert row is not None
        assert row.object == informed
        # the encoding is canonical: the same set is the same object
        again = await c.inform(Tagged("t", {"beta", "gamma", "alpha"}))
        assert again.changed is False


async def test_untyped_float_field_reads_back_equal(pg_dsn: str, config: delta.Config) -> None:
    informed = Blob("floats", {"big": 1e23, "huge": 1.5e300, "list": [2.5e22]})
    async with delta.open_delta_client(
        pg_dsn, controllers_for(BlobController()), config=config
    ) as c:
        await c.inform(informed)
        row = await c.get_resource("blob", "floats")
    assert row is not None
    assert row.object == informed
