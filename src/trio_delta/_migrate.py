"""``migrate()``: create or upgrade trio_delta's schema."""

from __future__ import annotations

import zlib
from typing import Any

import psycopg
from psycopg import sql

from ._config import check_schema
from ._errors import StoreError
from ._logs import get_logger
from ._store._bridge import Bridge, open_bridge
from ._store.dsn import describe_dsn, normalize_dsn, redact
from ._util import require_trio
from .migrations.runner import fresh_schema, migrations

log = get_logger("trio_delta.migrate")


def _lock_key(schema: str) -> int:
    # A stable 32-bit key per schema for pg_advisory_xact_lock.
    return zlib.crc32(f"trio_delta:{schema}".encode())


async def _apply(bridge: Bridge, dsn: str, schema: str, upto: int | None = None) -> list[int]:
    """Bring ``schema`` to the latest version (to ``upto``, migration by
    migration: for tests of the upgrade path)."""
    ident = sql.Identifier(schema)
    applied: list[int] = []
    conn: psycopg.AsyncConnection[Any] = await bridge.connect(dsn, autocommit=False)
    # One transaction and nothing prepared: it may run through a
    # transaction-mode pooler.
    conn.prepare_threshold = None
    async with conn, conn.transaction():
        await conn.execute("select pg_advisory_xact_lock(%s)", [_lock_key(schema)])
        # Only when missing: "create schema if not exists" needs CREATE on
        # the database even when the schema exists, which the owner of a
        # pre-created schema need not have.
        cur = await conn.execute("select 1 from pg_namespace where nspname = %s", [schema])
        if await cur.fetchone() is None:
            await conn.execute(sql.SQL("create schema {}").format(ident))
        await conn.execute(
            sql.SQL(
                "create table if not exists {}.migrations ("
                " version integer primary key,"
                " name text not null,"
                " applied_at timestamptz not null default now())"
            ).format(ident)
        )
        cur = await conn.execute(sql.SQL("select version from {}.migrations").format(ident))
        done = {row[0] for row in await cur.fetchall()}
        if not done and upto is None:
            # New: the whole schema at once, recorded as every migration.
            await conn.execute(sql.SQL(fresh_schema()).format(schema=ident))  # pyright: ignore[reportArgumentType]
        for migration in migrations():
            if migration.version in done or (upto is not None and migration.version > upto):
                continue
            if done or upto is not None:
                body = sql.SQL(migration.sql).format(schema=ident)  # pyright: ignore[reportArgumentType]
                await conn.execute(body)
            await conn.execute(
                sql.SQL("insert into {}.migrations (version, name) values (%s, %s)").format(ident),
                [migration.version, migration.name],
            )
            applied.append(migration.version)
    return applied


async def migrate(dsn: str, *, schema: str = "delta") -> list[int]:
    """Create or upgrade trio_delta's tables in ``schema``; returns the
    versions applied (empty when already current).

    Idempotent, and safe to run from several processes at once. Runs on
    Trio; from synchronous code, ``trio-delta migrate`` does the same.
    """
    require_trio("trio_delta.migrate()")
    return await migrate_to(dsn, schema=schema)


async def migrate_to(dsn: str, *, schema: str, upto: int | None = None) -> list[int]:
    """:func:`migrate`; with ``upto``, only as far as that version, one
    migration at a time (the upgrade path, for tests)."""
    check_schema(schema)
    conninfo = normalize_dsn(dsn)
    async with open_bridge() as bridge:
        try:
            applied = await bridge.run(_apply, bridge, conninfo, schema, upto)
        except (psycopg.Error, OSError) as exc:
            raise StoreError(
                f"migrating schema {schema!r} on {describe_dsn(conninfo)} failed: "
                f"{redact(str(exc)).strip()}"
            ) from exc
    if applied:
        log.info("schema %r migrated to version %d (applied %s)", schema, applied[-1], applied)
    return applied
