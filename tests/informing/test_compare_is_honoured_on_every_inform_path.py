"""The ``compare`` stale check behaves the same on every inform path: an
object older than the stored one changes nothing, a newer one replaces it."""

from __future__ import annotations

import pytest

import trio_delta as delta

from ..conftest import sql
from ..models import RecordingController, User, controllers_for
from .paths import PATHS, Path, Unit


@pytest.fixture
def app_table(pg_dsn: str, schema: str) -> str:
    table = f"{schema}.app_rows"
    sql(pg_dsn, f"create table {table} (key text primary key)")
    return table


@pytest.mark.parametrize("path_name", list(PATHS))
async def test_older_objects_are_ignored_newer_ones_replace(
    path_name: str, pg_dsn: str, schema: str, config: delta.Config, app_table: str
) -> None:
    path: Path = PATHS[path_name]
    users = RecordingController()
    async with delta.open_delta_client(pg_dsn, controllers_for(users), config=config) as c:

        async def inform(step: str, user: User) -> delta.InformResult[User]:
            done = await path(c, pg_dsn, schema, Unit(app_table, step, [user]))
            (result,) = done.results
            return result

        first = await inform("1", User("u@x.io", "v2", updated_at=2))
        assert (first.changed, first.already_exists) == (True, False)

        older = await inform("2", User("u@x.io", "v1", updated_at=1))
        assert (older.changed, older.already_exists) == (False, True)
        assert older.resource.object == User("u@x.io", "v2", updated_at=2)  # what is stored

        newer = await inform("3", User("u@x.io", "v3", updated_at=3))
        assert (newer.changed, newer.already_exists) == (True, True)
        assert newer.resource.object == User("u@x.io", "v3", updated_at=3)

    stored = sql(pg_dsn, f"select object->>'name' from {schema}.resources")
    assert stored == [("v3",)]
