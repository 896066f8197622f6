"""``client.inform_many`` of more objects than one chunk writes each chunk
while the next is checked and encoded, in one transaction of its own, and
keeps the semantics of a batch prepared whole: all or nothing, an invalid
object named by position, a repeated object written once as its last
version, stale objects left as stored, a held row a lock timeout."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar

import psycopg
import pytest
import trio
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode
from psycopg.conninfo import make_conninfo

import trio_delta as delta
from trio_delta._informing import STREAM_CHUNK
from trio_delta._store.postgres import statements
from trio_delta.testing import open_test_client
from trio_delta.tracing import OpenTelemetryTracing

from ..conftest import sql
from ..models import Note, NoteController, RecordingController, User, controllers_for

COUNT = STREAM_CHUNK * 3 + 17


async def every_connection_returned(client: delta.Client) -> None:
    """The pool's connections all come back (the client's own services
    borrow one now and then, so not necessarily at this instant)."""
    with trio.fail_after(5):
        while client.pool_in_use[0]:
            await trio.sleep(0.01)


@dataclass
class Traced:
    """A note whose ``id()`` records when it was prepared."""

    kind: ClassVar[str] = "note"
    key: str
    text: str = ""

    events: ClassVar[list[str]] = []

    def id(self) -> str:
        Traced.events.append(f"prepared {self.key}")
        return self.key


async def test_the_first_chunk_is_written_before_the_last_is_prepared(
    pg_dsn: str, schema: str, config: delta.Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    Traced.events = []
    build = statements.upsert_params

    def recording(items: Any, *args: Any, **kwargs: Any) -> dict[str, Any]:
        Traced.events.append(f"statement of {len(items)}")
        return build(items, *args, **kwargs)

    monkeypatch.setattr(statements, "upsert_params", recording)
    objs = [Traced(f"n{i}", str(i)) for i in range(COUNT)]
    async with delta.open_delta_client(
        pg_dsn, controllers_for(NoteController()), config=config
    ) as c:
        results = await c.inform_many(objs)
    assert [r.resource.object_id for r in results] == [o.key for o in objs]
    first_statement = Traced.events.index(f"statement of {STREAM_CHUNK}")
    assert first_statement < Traced.events.index(f"prepared n{COUNT - 1}")
    assert Traced.events.count(f"statement of {STREAM_CHUNK}") == 3
    assert sql(pg_dsn, f"select count(*) from {schema}.resources") == [(COUNT,)]


async def test_the_transaction_commits_once_and_wakes_the_workers(
    pg_dsn: str, schema: str, config: delta.Config
) -> None:
    notes = NoteController()
    async with delta.open_delta_client(pg_dsn, controllers_for(notes), config=config) as c:
        with trio.fail_after(30):
            await c.inform_many([Note(f"n{i}") for i in range(COUNT)])
            while len(notes.worked) < COUNT:
                await trio.sleep(0.05)
        assert sorted(notes.worked) == sorted(f"n{i}" for i in range(COUNT))


@pytest.mark.parametrize("driver", ["native", "trio-asyncio"])
async def test_an_invalid_object_in_the_last_chunk_writes_nothing(
    pg_dsn: str, schema: str, config: delta.Config, driver: str
) -> None:
    objs = [Note(f"n{i}") for i in range(COUNT)]
    objs[-1] = Note("")
    async with delta.open_delta_client(
        pg_dsn, controllers_for(NoteController()), config=dataclasses.replace(config, driver=driver)
    ) as c:
        with pytest.raises(delta.ObjectError, match=rf"^object {COUNT - 1}: ") as refused:
            await c.inform_many(objs)
        assert refused.value.index == COUNT - 1
        await every_connection_returned(c)
        assert (await c.inform(Note("after"))).changed  # the client goes on
    assert sql(pg_dsn, f"select object_id from {schema}.resources") == [("after",)]


async def test_the_memory_store_refuses_a_big_batch_whole() -> None:
    objs = [Note(f"n{i}") for i in range(COUNT)]
    objs[STREAM_CHUNK + 1] = Note("")
    async with open_test_client(controllers_for(NoteController())) as t:
        with pytest.raises(delta.ObjectError) as refused:
            await t.client.inform_many(objs)
        assert refused.value.index == STREAM_CHUNK + 1
        assert await t.client.list_resources() == []
        results = await t.client.inform_many(objs[:STREAM_CHUNK] + objs[STREAM_CHUNK + 2 :])
        assert len(results) == COUNT - 2
        assert len(await t.client.list_resources(limit=COUNT)) == COUNT - 2


async def test_an_object_repeated_in_a_later_chunk_is_written_once_as_its_last_version(
    pg_dsn: str, schema: str, config: delta.Config
) -> None:
    async with delta.open_delta_client(
        pg_dsn, controllers_for(NoteController()), config=config
    ) as c:
        await c.inform(Note("n5", "stored"))
        objs = [Note(f"n{i}") for i in range(COUNT)]
        objs[5] = Note("n5", "changed in between")
        objs[-1] = Note("n5", "stored")  # the last version: as stored
        results = await c.inform_many(objs)
        assert len(results) == COUNT
        # Written once, as the last version, which is the stored one:
        # nothing changed for it, and both results say so.
        assert results[5] is results[-1] or results[5].resource == results[-1].resource
        assert (results[5].already_exists, results[5].changed) == (True, False)
        assert results[-1].resource.object == Note("n5", "stored")
    assert sql(
        pg_dsn, f"select object->>'text' from {schema}.resources where object_id = 'n5'"
    ) == [("stored",)]
    assert sql(pg_dsn, f"select count(*) from {schema}.resources") == [(COUNT - 1,)]


async def test_stale_objects_in_a_big_batch_are_left_as_stored(
    pg_dsn: str, schema: str, config: delta.Config
) -> None:
    async with delta.open_delta_client(
        pg_dsn, controllers_for(RecordingController()), config=config
    ) as c:
        await c.inform(User("u7@x", "newer", updated_at=5))
        users = [User(f"u{i}@x", "batch", updated_at=1) for i in range(COUNT)]
        results = await c.inform_many(users)
        assert (results[7].changed, results[7].resource.object.name) == (False, "newer")
        assert all(r.changed for i, r in enumerate(results) if i != 7)
    assert sql(
        pg_dsn, f"select count(*) from {schema}.resources where object->>'name' = 'batch'"
    ) == [(COUNT - 1,)]


async def test_a_row_held_elsewhere_fails_the_batch_with_a_lock_timeout(
    pg_dsn: str, schema: str, config: delta.Config
) -> None:
    async with delta.open_delta_client(
        pg_dsn,
        controllers_for(NoteController()),
        config=dataclasses.replace(config, lock_timeout=0.2),
    ) as c:
        held = f"n{STREAM_CHUNK * 2 + 3}"
        await c.inform(Note(held, "stored"))
        with psycopg.connect(pg_dsn) as other:
            other.execute(
                f"select 1 from {schema}.resources where object_id = %s for update", (held,)
            )
            with pytest.raises(delta.LockTimeoutError) as refused:
                await c.inform_many([Note(f"n{i}", "new") for i in range(COUNT)])
            assert (refused.value.kind, refused.value.object_id) == ("note", held)
        await every_connection_returned(c)
    assert sql(pg_dsn, f"select object_id, object->>'text' from {schema}.resources") == [
        (held, "stored")
    ]


@dataclass
class Cancelling:
    """A note whose ``id()`` cancels ``scope`` when it is the one to."""

    kind: ClassVar[str] = "note"
    key: str
    cancels: bool = False

    scope: ClassVar[trio.CancelScope | None] = None

    def id(self) -> str:
        if self.cancels and Cancelling.scope is not None:
            Cancelling.scope.cancel()
        return self.key


async def test_a_cancel_in_the_middle_arrives_as_itself_and_writes_nothing(
    pg_dsn: str, schema: str, config: delta.Config
) -> None:
    objs = [Cancelling(f"n{i}", cancels=i == STREAM_CHUNK + 10) for i in range(COUNT)]
    seen: list[BaseException] = []
    async with delta.open_delta_client(
        pg_dsn, controllers_for(NoteController()), config=config
    ) as c:
        with trio.CancelScope() as scope:
            Cancelling.scope = scope
            try:
                await c.inform_many(objs)
            except BaseException as exc:
                seen.append(exc)
                raise
        assert scope.cancelled_caught
        assert [type(e) for e in seen] == [trio.Cancelled]
        await every_connection_returned(c)
    assert sql(pg_dsn, f"select count(*) from {schema}.resources") == [(0,)]


class Counting(delta.Observer):
    def __init__(self) -> None:
        self.counts: list[tuple[str, str, int]] = []

    def informed(self, kind: str, result: str, count: int) -> None:
        self.counts.append((kind, result, count))


async def test_counts_and_the_span_tell_of_what_was_committed(
    pg_dsn: str, schema: str, config: delta.Config
) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    counting = Counting()
    observer = delta.Observers(counting, OpenTelemetryTracing(provider))
    async with delta.open_delta_client(
        pg_dsn,
        controllers_for(NoteController()),
        config=dataclasses.replace(config, observer=observer),
    ) as c:
        # Repeated in a later chunk: written whole after a rollback, one span.
        objs = [Note(f"n{i}") for i in range(COUNT)]
        objs[-1] = Note("n3", "again")
        await c.inform_many(objs)
        (span,) = [s for s in exporter.get_finished_spans() if s.name == "trio_delta.inform note"]
        assert (span.status.status_code, span.events) == (StatusCode.UNSET, ())
        assert counting.counts == [("note", "new", COUNT - 1)]

        # Refused at commit: nothing counted, the span failed.
        exporter.clear()
        counting.counts.clear()
        sql(
            pg_dsn,
            f"""
            create function {schema}.refuse() returns trigger language plpgsql as $$
            begin raise exception 'refused at commit'; end $$;
            create constraint trigger refuse after insert on {schema}.resources
                deferrable initially deferred for each row
                when (new.object_id = 'poison') execute function {schema}.refuse();
            """,
        )
        poisoned = [Note(f"m{i}") for i in range(COUNT)]
        poisoned[7] = Note("poison")
        with pytest.raises(delta.StoreError, match="refused at commit"):
            await c.inform_many(poisoned)
        (span,) = [s for s in exporter.get_finished_spans() if s.name == "trio_delta.inform note"]
        assert span.status.status_code is StatusCode.ERROR
        assert counting.counts == []
    assert sql(pg_dsn, f"select count(*) from {schema}.resources where object_id like 'm%'") == [
        (0,)
    ]


async def test_text_arrives_intact_on_a_session_that_is_not_utf8(
    pg_dsn: str, schema: str, config: delta.Config
) -> None:
    # The client's own connections may be opened with another client
    # encoding (the DSN's); the ids and objects still arrive as given.
    latin1 = make_conninfo(pg_dsn, client_encoding="latin1")
    objs = [Note(f"café-{i}", "naïve") for i in range(COUNT)]
    async with delta.open_delta_client(
        latin1, controllers_for(NoteController()), config=config
    ) as c:
        results = await c.inform_many(objs)
        assert [r.resource.object_id for r in results] == [o.key for o in objs]
        # One object, and a batch of one statement: the pool's path.
        assert (await c.inform(Note("élan", "naïve"))).resource.object_id == "élan"
        small = await c.inform_many([Note(f"où-{i}", "naïve") for i in range(3)])
        assert [r.resource.object_id for r in small] == ["où-0", "où-1", "où-2"]
    assert sql(
        pg_dsn,
        f"select count(*) from {schema}.resources where object->>'text' = 'naïve'"
        " and (object_id like 'café-%%' or object_id like 'où-%%' or object_id = 'élan')",
    ) == [(COUNT + 4,)]
