"""A schema created fresh (``schema.sql`` in one step) is the same as one
migrated from version 1 through every migration: same columns, defaults,
constraints and indexes. A migration without its ``schema.sql`` change, or
the reverse, fails here."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

import trio_delta as delta
from trio_delta._migrate import migrate_to
from trio_delta.migrations.runner import LATEST_VERSION

from .conftest import drop_schema, sql

CATALOG = {
    "columns": """
        select table_name, column_name, data_type, is_nullable, column_default, is_identity
        from information_schema.columns where table_schema = %(s)s
        order by table_name, column_name""",
    "constraints": """
        select cl.relname, c.conname, pg_get_constraintdef(c.oid)
        from pg_constraint c join pg_class cl on cl.oid = c.conrelid
        join pg_namespace n on n.oid = cl.relnamespace where n.nspname = %(s)s
        order by cl.relname, c.conname""",
    "indexes": """
        select tablename, indexname, replace(indexdef, %(s)s, 'SCHEMA')
        from pg_indexes where schemaname = %(s)s order by tablename, indexname""",
}


def describe(dsn: str, schema: str) -> dict[str, list[tuple[Any, ...]]]:
    described = {name: sql(dsn, query, {"s": schema}) for name, query in CATALOG.items()}
    # The quoted schema name appears in index definitions as "name".
    described["indexes"] = [
        (t, i, d.replace('"SCHEMA"', "SCHEMA")) for t, i, d in described["indexes"]
    ]
    return described


@pytest.fixture
def two_schemas(pg_dsn: str, schema_name: str) -> Iterator[tuple[str, str]]:
    upgraded = f"{schema_name}_up"
    yield schema_name, upgraded
    drop_schema(pg_dsn, upgraded)


async def test_fresh_and_migrated_schemas_match(pg_dsn: str, two_schemas: tuple[str, str]) -> None:
    fresh, upgraded = two_schemas
    assert await delta.migrate(pg_dsn, schema=fresh) == list(range(1, LATEST_VERSION + 1))
    assert await migrate_to(pg_dsn, schema=upgraded, upto=1) == [1]
    assert await delta.migrate(pg_dsn, schema=upgraded) == list(range(2, LATEST_VERSION + 1))
    expected, got = describe(pg_dsn, fresh), describe(pg_dsn, upgraded)
    for part in CATALOG:
        assert got[part] == expected[part], part
    assert expected["columns"]  # the comparison saw the tables
    versions = "select version, name from {}.migrations order by version"
    assert sql(pg_dsn, versions.format(fresh)) == sql(pg_dsn, versions.format(upgraded))


async def test_an_upgrade_keeps_the_rows(pg_dsn: str, schema_name: str) -> None:
    """Rows written at version 1 read back at the latest, with the new
    columns at their defaults."""
    await migrate_to(pg_dsn, schema=schema_name, upto=1)
    sql(
        pg_dsn,
        f"insert into {schema_name}.resources (kind, object_id, namespace, state, max_attempts,"
        " object, hash, created_at, updated_at, scheduled_at) values"
        " ('note', 'n1', 'default', 'scheduled', 3, '{}', '\\x00', now(), now(), now())",
    )
    await delta.migrate(pg_dsn, schema=schema_name)
    assert sql(pg_dsn, f"select object_id, priority, snoozes from {schema_name}.resources") == [
        ("n1", 0, 0)
    ]
