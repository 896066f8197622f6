"""Whichever way an application informs in its own transaction (the client's
transaction, a Trio connection, a synchronous connection, the producer from
synchronous code or asyncio, a SQLAlchemy session), the resource is written
and worked when the application commits, and only then; a rollback or an
error leaves no trace; an invalid object is refused before anything is sent,
and the application's transaction goes on."""

from __future__ import annotations

import statistics
from typing import Any

import pytest
import trio

import trio_delta as delta

from ..conftest import sql
from ..models import Note, NoteController, controllers_for
from .paths import PATHS, Path, Unit

pytestmark = pytest.mark.parametrize("path_name", list(PATHS))


class TimedNotes(NoteController):
    """Records when each note's work started."""

    def __init__(self) -> None:
        super().__init__()
        self.started_at: dict[str, float] = {}
        self.any = trio.Event()

    async def work(self, resource: delta.Resource[Note]) -> None:
        import time

        self.started_at.setdefault(resource.object.key, time.perf_counter())
        self.any.set()
        await super().work(resource)


@pytest.fixture
def app_table(pg_dsn: str, schema: str) -> str:
    table = f"{schema}.app_rows"
    sql(pg_dsn, f"create table {table} (key text primary key)")
    return table


def _keys(pg_dsn: str, query: str) -> set[str]:
    return {row[0] for row in sql(pg_dsn, query)}


async def test_commit_writes_both_and_wakes_the_workers(
    path_name: str, pg_dsn: str, schema: str, config: delta.Config, app_table: str
) -> None:
    path: Path = PATHS[path_name]
    notes = TimedNotes()
    # A poll far off: a wake-up can only come from the commit's notification.
    config = delta.Config(schema=schema, poll_interval=30.0, shutdown_grace=2.0)
    delays: list[float] = []
    async with delta.open_delta_client(pg_dsn, controllers_for(notes), config=config) as c:
        for i in range(7):
            key = f"{path_name}-{i}"
            done = await path(c, pg_dsn, schema, Unit(app_table, key, [Note(key, "hello")]))
            assert done.committed_at is not None
            (result,) = done.results
            assert result.changed
            assert not result.already_exists
            assert result.resource.state is delta.ResourceState.SCHEDULED
            assert result.resource.object == Note(key, "hello")
            with trio.fail_after(5):
                while key not in notes.started_at:
                    await trio.sleep(0.001)
            delays.append(notes.started_at[key] - done.committed_at)
    keys = {f"{path_name}-{i}" for i in range(7)}
    assert _keys(pg_dsn, f"select key from {app_table}") == keys
    assert _keys(pg_dsn, f"select object_id from {schema}.resources where state = 'synced'") == keys
    # Woken by the commit, not found by a poll (30 s away): well under a
    # second even on a loaded machine. (The benchmark measures the delay.)
    print(f"{path_name}: commit -> work, median {statistics.median(delays) * 1000:.2f} ms")
    assert statistics.median(delays) < 0.5, delays


@pytest.mark.parametrize("ending", ["rollback", "raise"])
async def test_rollback_or_an_error_writes_and_starts_nothing(
    path_name: str, ending: Any, pg_dsn: str, schema: str, config: delta.Config, app_table: str
) -> None:
    path: Path = PATHS[path_name]
    notes = TimedNotes()
    async with delta.open_delta_client(pg_dsn, controllers_for(notes), config=config) as c:
        done = await path(c, pg_dsn, schema, Unit(app_table, "gone", [Note("gone")], ending))
        assert done.committed_at is None
        assert [r.changed for r in done.results] == [True]  # informed, then undone
        # What was rolled back cannot be claimed, however often the
        # fetcher looks (every 0.2 s here): several looks, nothing found.
        await trio.sleep(0.5)
        assert await c.get_resource("note", "gone") is None
        # The client goes on: a later unit commits and is worked.
        done = await path(c, pg_dsn, schema, Unit(app_table, "kept", [Note("kept")]))
        with trio.fail_after(5):
            await notes.any.wait()
    assert notes.worked == ["kept"]
    assert _keys(pg_dsn, f"select key from {app_table}") == {"kept"}
    assert _keys(pg_dsn, f"select object_id from {schema}.resources") == {"kept"}


class NoId:
    kind = "note"


async def test_an_invalid_object_is_refused_and_the_transaction_goes_on(
    path_name: str, pg_dsn: str, schema: str, config: delta.Config, app_table: str
) -> None:
    path: Path = PATHS[path_name]
    notes = TimedNotes()
    async with delta.open_delta_client(pg_dsn, controllers_for(notes), config=config) as c:
        unit = Unit(app_table, "mine", [Note("ok"), NoId()], carry_on=True)
        done = await path(c, pg_dsn, schema, unit)
        # Refused before anything was sent: the application's transaction
        # was untouched, and it committed its own row.
        assert done.refused is not None
        assert done.refused.index == 1
        assert "object 1: NoId has no id() method" in str(done.refused)
        assert done.committed_at is not None
        # Left uncaught, it rolls the application's transaction back.
        with pytest.raises(delta.ObjectError) as info:
            await path(c, pg_dsn, schema, Unit(app_table, "theirs", [NoId(), Note("ok")]))
        assert info.value.index == 0
    assert _keys(pg_dsn, f"select key from {app_table}") == {"mine"}
    assert sql(pg_dsn, f"select count(*) from {schema}.resources") == [(0,)]
    assert notes.worked == []
