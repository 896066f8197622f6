"""``migrate()`` is idempotent and safe to run concurrently; a client refuses
an unmigrated schema with a message saying how to migrate; schema names are
validated before anything touches the database."""

from __future__ import annotations

import pytest
import trio

import trio_delta as delta

from .conftest import sql
from .models import NoteController, controllers_for


def _leaves(exc: BaseException) -> list[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for sub in exc.exceptions for leaf in _leaves(sub)]
    return [exc]


def _schema_exists(dsn: str, name: str) -> bool:
    return bool(
        sql(dsn, "select 1 from information_schema.schemata where schema_name = %s", [name])
    )


async def test_migrate_twice_applies_nothing_the_second_time(pg_dsn: str, schema_name: str) -> None:
    first = await delta.migrate(pg_dsn, schema=schema_name)
    assert first
    assert first == list(range(1, len(first) + 1))
    assert await delta.migrate(pg_dsn, schema=schema_name) == []
    versions = sql(pg_dsn, f"select version from {schema_name}.migrations order by version")
    assert [v for (v,) in versions] == first
    # and the schema works
    config = delta.Config(schema=schema_name, poll_interval=0.2)
    async with delta.open_delta_client(
        pg_dsn, controllers_for(NoteController()), config=config
    ) as c:
        assert await c.list_resources() == []


async def test_concurrent_migrations_both_succeed(pg_dsn: str, schema_name: str) -> None:
    results: list[list[int]] = []

    async def run() -> None:
        results.append(await delta.migrate(pg_dsn, schema=schema_name))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(run)
        nursery.start_soon(run)
    assert len(results) == 2
    applied = sorted(v for r in results for v in r)
    assert applied  # one of them did the work ...
    assert applied == list(range(1, len(applied) + 1))  # ... each version exactly once
    assert [] in results
    assert await delta.migrate(pg_dsn, schema=schema_name) == []


async def _open_client_error(pg_dsn: str, schema: str) -> BaseException:
    config = delta.Config(schema=schema, poll_interval=0.2)
    try:
        async with delta.open_delta_client(
            pg_dsn, controllers_for(NoteController()), config=config
        ):
            pass
    except BaseException as exc:
        return exc
    raise AssertionError("the client started on an unmigrated schema")


async def test_unmigrated_schema_error_says_how_to_migrate(pg_dsn: str, schema_name: str) -> None:
    exc = await _open_client_error(pg_dsn, schema_name)
    (error,) = _leaves(exc)
    assert isinstance(error, delta.NotMigratedError)
    message = str(error)
    assert schema_name in message
    assert "migrate" in message
    assert "trio-delta migrate" in message or "trio_delta.migrate" in message
    assert not _schema_exists(pg_dsn, schema_name)  # refusing created nothing


async def test_outdated_schema_error_says_how_to_migrate(pg_dsn: str, schema_name: str) -> None:
    sql(pg_dsn, f"create schema {schema_name}")
    sql(
        pg_dsn,
        f"create table {schema_name}.migrations (version integer primary key, "
        "name text not null, applied_at timestamptz not null default now())",
    )
    exc = await _open_client_error(pg_dsn, schema_name)
    (error,) = _leaves(exc)
    assert isinstance(error, delta.NotMigratedError)
    assert "migrate" in str(error)


async def test_unmigrated_schema_raises_not_migrated_error(pg_dsn: str, schema_name: str) -> None:
    config = delta.Config(schema=schema_name, poll_interval=0.2)
    with pytest.raises(delta.NotMigratedError, match="migrate"):
        async with delta.open_delta_client(
            pg_dsn, controllers_for(NoteController()), config=config
        ):
            pass


async def test_migrate_on_an_unreachable_server_raises_store_error() -> None:
    with pytest.raises(delta.StoreError):
        await delta.migrate(
            "host=127.0.0.1 port=1 user=postgres dbname=test connect_timeout=1",
            schema="unreachable",
        )


BAD_SCHEMAS = [
    "",
    "Upper",
    "1starts_with_digit",
    "has-dash",
    "has space",
    'q"uote',
    "x; drop schema public",
    "a" * 41,
    "caf\u00e9",
]


@pytest.mark.parametrize("name", BAD_SCHEMAS)
async def test_bad_schema_name_is_a_config_error(pg_dsn: str, name: str) -> None:
    with pytest.raises(delta.ConfigError):
        delta.Config(schema=name)
    with pytest.raises(delta.ConfigError):
        await delta.migrate(pg_dsn, schema=name)
    assert not _schema_exists(pg_dsn, name)
