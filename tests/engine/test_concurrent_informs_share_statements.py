"""Concurrent ``Client.inform`` calls share statements, each keeping its own
result and its own error; a cancelled call that was not sent writes nothing."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, cast

import pytest
import trio
import trio.testing

import trio_delta as delta
from trio_delta._coalescer import InformCoalescer
from trio_delta._errors import StoreError
from trio_delta._objects import prepare_object
from trio_delta._store.memory import open_memory_store
from trio_delta.testing import open_test_client

from ..models import Note, NoteController, User, controllers_for


async def test_a_hundred_concurrent_informs_take_a_few_statements(
    autojump_clock: trio.testing.MockClock,
) -> None:
    notes = NoteController()
    async with open_test_client(controllers_for(notes)) as t:
        results: dict[str, delta.InformResult[Note]] = {}

        async def inform(i: int) -> None:
            results[f"n{i}"] = await t.client.inform(Note(f"n{i}", str(i)))

        async with trio.open_nursery() as nursery:
            for i in range(100):
                nursery.start_soon(inform, i)
        coalescer = t.client._writer.coalescer  # pyright: ignore[reportPrivateUsage]
        # The first call goes alone; the rest waited together behind it.
        assert coalescer.statements <= 3
        assert sorted(results) == sorted(f"n{i}" for i in range(100))
        for key, result in results.items():
            assert result.changed
            assert result.resource.object == Note(key, key[1:])
        await t.run_until_idle()
    assert sorted(notes.worked) == sorted(f"n{i}" for i in range(100))


async def test_the_same_object_twice_at_once_is_written_as_the_last(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_test_client(controllers_for(NoteController())) as t:
        got: list[delta.InformResult[Note]] = []
        arrived: list[str] = []

        async def inform(text: str) -> None:
            arrived.append(text)  # no checkpoint before the call joins the queue
            got.append(await t.client.inform(Note("same", text)))

        async with trio.open_nursery() as nursery:
            for text in ("warm-up", "first", "second"):
                nursery.start_soon(inform, text)
        row = await t.client.get_resource("note", "same")
    # As if one after the other, in the order they came: the last one wins,
    # and the calls that shared its statement see the row as it is.
    assert row is not None
    assert row.object == Note("same", arrived[-1])
    assert len(got) == 3
    assert got[-1].resource.object == row.object


async def test_a_held_row_fails_only_its_own_call(
    autojump_clock: trio.testing.MockClock,
) -> None:
    config = delta.Config(lock_timeout=1.0, client_id="test-client")
    users = controllers_for(NoteController())
    async with open_test_client(users, config=config) as t:
        outcomes: dict[str, str] = {}

        async def inform(key: str) -> None:
            try:
                await t.client.inform(Note(key))
                outcomes[key] = "ok"
            except delta.LockTimeoutError as exc:
                outcomes[key] = f"held: {exc.object_id}"

        async with t.client.transaction() as tx:
            await t.client.inform_tx(tx, Note("held"))
            # The row stays locked while these run together.
            async with trio.open_nursery() as nursery:
                nursery.start_soon(inform, "warm-up")
                for key in ("a", "held", "b"):
                    nursery.start_soon(inform, key)
    assert outcomes == {"warm-up": "ok", "a": "ok", "b": "ok", "held": "held: held"}


async def test_a_cancelled_waiting_call_writes_nothing(
    autojump_clock: trio.testing.MockClock,
) -> None:
    config = delta.Config(lock_timeout=5.0, client_id="test-client")
    async with open_test_client(controllers_for(NoteController()), config=config) as t:
        async with t.client.transaction() as tx:
            await t.client.inform_tx(tx, Note("held"))
            async with trio.open_nursery() as nursery:
                # The first call waits on the held row (a statement in flight);
                # the second queues behind it and is cancelled before it is sent.
                nursery.start_soon(_ignore_lock_timeout, t.client, Note("held"))
                await trio.sleep(0.1)
                with trio.move_on_after(0.5):
                    await t.client.inform(Note("never"))
        await trio.sleep(10)
        assert await t.client.get_resource("note", "never") is None


async def _ignore_lock_timeout(client: delta.Client, note: Note) -> None:
    with pytest.raises(delta.LockTimeoutError):
        await client.inform(note)


async def test_compare_still_applies_in_a_shared_statement(
    autojump_clock: trio.testing.MockClock,
) -> None:
    from ..models import RecordingController

    async with open_test_client(controllers_for(RecordingController())) as t:
        await t.client.inform(User("u@x.io", "new", updated_at=5))
        got: list[delta.InformResult[User]] = []

        async def inform(user: User) -> None:
            got.append(await t.client.inform(user))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(inform, User("v@x.io", "v", updated_at=1))
            nursery.start_soon(inform, User("u@x.io", "old", updated_at=1))
            nursery.start_soon(inform, User("w@x.io", "w", updated_at=1))
        by_id = {r.resource.object_id: r for r in got}
        assert (by_id["u@x.io"].changed, by_id["u@x.io"].stale) == (False, True)
        assert by_id["u@x.io"].resource.object == User("u@x.io", "new", updated_at=5)
        assert by_id["v@x.io"].changed
        assert by_id["w@x.io"].changed


class RefusesBanned:
    """A queue that holds its first write until released, refuses any
    statement holding a banned object (as a trigger of the application's
    would), and counts the versions of each object it writes."""

    def __init__(self, queue: Any) -> None:
        self.queue = queue
        self.release = trio.Event()
        self.first = True
        self.written: list[str] = []

    async def upsert(self, items: list[Any], params: Any) -> Any:
        if self.first:
            self.first = False
            await self.release.wait()
        if any(i.object_id.startswith("banned") for i in items):
            await trio.lowlevel.checkpoint()
            raise StoreError("inform failed: refused", sqlstate="P0001")
        self.written += [f"{i.object_id}={i.obj.text}" for i in items]
        return await self.queue.upsert(items, params)


async def test_a_refused_shared_statement_writes_an_object_given_twice_once(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_memory_store() as store:
        queue = RefusesBanned(store.queue)
        coalescer = InformCoalescer(
            cast(Any, queue),
            lambda: datetime(2030, 1, 1, tzinfo=UTC),
            batch_size=100,
            decode_as=lambda kind: None,
        )
        results: dict[str, Any] = {}

        async def inform(name: str, note: Note) -> None:
            try:
                results[name] = await coalescer.upsert(prepare(note))
            except StoreError as exc:
                results[name] = exc

        async with trio.open_nursery() as nursery:
            nursery.start_soon(inform, "first", Note("first", "0"))
            await trio.testing.wait_all_tasks_blocked()  # its statement is in flight
            for name, note in [
                ("x-old", Note("x", "old")),
                ("banned", Note("banned", "")),
                ("x-new", Note("x", "new")),
            ]:
                nursery.start_soon(inform, name, note)
                await trio.testing.wait_all_tasks_blocked()  # queued, in this order
            queue.release.set()
    assert isinstance(results["banned"], StoreError)
    assert queue.written == ["first=0", "x=new"]  # x once, as its last version
    assert results["x-old"] == results["x-new"]
    assert results["x-old"] is not results["x-new"]
    assert results["x-new"].resource.object == {"key": "x", "text": "new"}


def prepare(note: Note) -> Any:
    return prepare_object(note, None, default_max_attempts=5)
