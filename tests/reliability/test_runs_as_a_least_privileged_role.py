"""trio_delta runs as a role that has only what docs/reliability.md grants it.

The grants are read from the documentation itself (the SQL block between the
``least-privilege:start`` and ``least-privilege:end`` markers), so the doc
and this test cannot drift apart. On a database of its own on the session's
own server: an administrator migrates, the documented statements run, and a
client then works end to end as the role - informs, user transactions,
informers, work that syncs, fails, degrades and deletes, leader election,
rescuer, expirer and cleaner, the ``trio-delta`` command - with no
"permission denied" anywhere, while the role can still not create anything.
"""

from __future__ import annotations

import contextlib
import logging
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import psycopg
import pytest
import trio
from psycopg import sql

import trio_delta as delta
from tests.reliability.conftest import OwnServer
from trio_delta.cli import main as cli_main

DOC = Path(__file__).resolve().parents[2] / "docs" / "reliability.md"
BLOCK = re.compile(
    r"<!-- least-privilege:start -->\s*```sql\n(.*?)```\s*"
    r"<!-- least-privilege:end -->",
    re.S,
)


def documented_statements(role: str, schema: str, database: str) -> list[str]:
    """The doc's SQL, for our names (doc: delta_app, delta, appdb)."""
    match = BLOCK.search(DOC.read_text())
    assert match, f"no least-privilege SQL block in {DOC}"
    text = "\n".join(line.split("--", 1)[0] for line in match.group(1).splitlines())
    text = re.sub(r"\bdelta_app\b", role, text)
    text = re.sub(r"\bdelta\b", schema, text)
    text = re.sub(r"\bappdb\b", database, text)
    return [s.strip() for s in text.split(";") if s.strip()]


@dataclass
class LeastPrivileged:
    admin_dsn: str
    role_dsn: str
    role: str
    schema: str
    database: str


def _dsn_for(server: OwnServer, user: str, database: str) -> str:
    socket_dir = server.dsn.split("host=", 1)[1]
    return f"postgresql://{user}@/{database}?host={socket_dir}"


@pytest.fixture
def least_privileged(own_pg: OwnServer) -> Iterator[LeastPrivileged]:
    suffix = uuid.uuid4().hex[:8]
    role, database, schema = f"td_app_{suffix}", f"td_lp_{suffix}", "delta"
    with psycopg.connect(own_pg.dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("create database {}").format(sql.Identifier(database)))
    admin_dsn = _dsn_for(own_pg, "postgres", database)
    setup = LeastPrivileged(admin_dsn, _dsn_for(own_pg, role, database), role, schema, database)
    statements = documented_statements(role, schema, database)
    migrate_at = next(i for i, s in enumerate(statements) if s.startswith("grant usage"))
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        for statement in statements[:migrate_at]:
            conn.execute(statement)  # type: ignore[call-overload]
    trio.run(lambda: delta.migrate(admin_dsn, schema=schema))  # as the administrator
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        for statement in statements[migrate_at:]:
            conn.execute(statement)  # type: ignore[call-overload]
    try:
        yield setup
    finally:
        with psycopg.connect(own_pg.dsn, autocommit=True) as conn:
            conn.execute(sql.SQL("drop database {} with (force)").format(sql.Identifier(database)))
            conn.execute(sql.SQL("drop role {}").format(sql.Identifier(role)))


@dataclass
class Task:
    kind: ClassVar[str] = "task"
    key: str

    def id(self) -> str:
        return self.key


class TaskController(delta.Controller[Task]):
    async def inform(self, opts: delta.InformOptions, send: trio.MemorySendChannel[Task]) -> None:
        async with send:
            await send.send(Task("from-informer"))

    async def work(self, resource: delta.Resource[Task]) -> None:
        if resource.object.key == "fails":
            raise RuntimeError("fails on purpose")
        if resource.object.key == "goes":
            raise delta.ResourceDelete("gone")


def test_the_documented_role_is_not_a_superuser_and_cannot_create(
    least_privileged: LeastPrivileged,
) -> None:
    lp = least_privileged
    with psycopg.connect(lp.admin_dsn) as conn:
        row = conn.execute(
            "select rolsuper, rolcreatedb, rolcreaterole, rolbypassrls "
            "from pg_roles where rolname = %s",
            [lp.role],
        ).fetchone()
    assert row == (False, False, False, False)
    with psycopg.connect(lp.role_dsn, autocommit=True) as conn:
        for statement in (
            f"create table {lp.schema}.mine (x int)",
            "create table public.mine (x int)",
            "create schema mine",
            f"drop table {lp.schema}.resources",
            f"alter table {lp.schema}.resources add column x int",
            f"truncate {lp.schema}.resources",
        ):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(statement)  # type: ignore[call-overload]
    # It cannot migrate either: that is the administrator's job (or see below).
    with pytest.raises(delta.StoreError, match="permission denied"):
        trio.run(lambda: delta.migrate(lp.role_dsn, schema=lp.schema))


async def test_a_client_works_end_to_end_as_the_documented_role(
    least_privileged: LeastPrivileged,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    caplog.set_level(logging.INFO)
    lp = least_privileged
    controllers = delta.Controllers()
    delta.add_controller(controllers, TaskController())
    config = delta.Config(
        schema=lp.schema,
        poll_interval=0.1,
        leader_ttl=1.0,
        maintenance_interval=0.2,
        retry_policy=lambda attempt: 0.05,
        max_attempts=2,
        deleted_retention=0.0,
        degraded_retention=0.5,
        shutdown_grace=1.0,
    )
    namespaces = {"default": delta.NamespaceConfig(resource_expiry=0.5)}
    async with delta.open_delta_client(
        lp.role_dsn, controllers, namespaces=namespaces, config=config
    ) as client:
        await client.inform(Task("syncs"))
        await client.inform(Task("fails"))
        await client.inform(Task("goes"))
        async with client.transaction() as tx:
            assert await tx.execute("select current_user") == [(lp.role,)]
            await client.inform_tx(tx, Task("in-tx"))
        await client.schedule_inform("task")

        async def done() -> bool:
            stats = client.stats.maintenance
            keys = {r.object_id for r in await client.list_resources()}
            return (
                client.is_leader
                and stats.expired > 0
                and "goes" not in keys
                and "fails" not in keys
                and "from-informer" in keys
                and sum(stats.cleaned.values()) >= 2
            )

        with trio.fail_after(15):
            while not await done():
                await trio.sleep(0.05)
        row = await client.get_resource("task", "syncs")
        assert row is not None
        with trio.fail_after(5):
            while (
                row := await client.get_resource("task", "in-tx")
            ) is None or row.state is not delta.ResourceState.SYNCED:
                await trio.sleep(0.05)
        with contextlib.suppress(delta.ResourceStateError):  # (it may have expired)
            await client.invalidate(Task("in-tx"))
        assert client.stats.maintenance.errors == 0
        assert client.stats.maintenance.runs > 0

    for args in (
        ["status"],
        ["resources", "list"],
        ["resources", "retry", "--all"],
        ["resources", "invalidate", "--kind", "task", "syncs"],
        ["resources", "delete", "--kind", "task", "--hard", "syncs"],
        ["migrate", "--check"],
    ):
        assert cli_main([*args, "--dsn", lp.role_dsn, "--schema", lp.schema]) in (0, 1), args
    out, err = capsys.readouterr()
    denied = [r.getMessage() for r in caplog.records if "permission denied" in r.getMessage()]
    assert not denied, denied
    assert "permission denied" not in out + err


def test_a_role_with_create_on_the_database_migrates_then_runs_without_it(
    own_pg: OwnServer,
) -> None:
    """The other documented way: CREATE on the database while migrating (the
    role then owns its schema), revoked afterwards."""
    suffix = uuid.uuid4().hex[:8]
    role, schema = f"td_owner_{suffix}", f"s_{suffix}"
    role_dsn = _dsn_for(own_pg, role, "postgres")
    with psycopg.connect(own_pg.dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("create role {} login").format(sql.Identifier(role)))
        conn.execute(
            sql.SQL("grant create on database postgres to {}").format(sql.Identifier(role))
        )
    try:
        trio.run(lambda: delta.migrate(role_dsn, schema=schema))
        with psycopg.connect(own_pg.dsn, autocommit=True) as conn:
            conn.execute(
                sql.SQL("revoke create on database postgres from {}").format(sql.Identifier(role))
            )
        trio.run(_one_task_synced, role_dsn, schema)
    finally:
        with psycopg.connect(own_pg.dsn, autocommit=True) as conn:
            conn.execute(sql.SQL("drop schema if exists {} cascade").format(sql.Identifier(schema)))
            conn.execute(sql.SQL("drop owned by {}").format(sql.Identifier(role)))
            conn.execute(sql.SQL("drop role {}").format(sql.Identifier(role)))


async def _one_task_synced(dsn: str, schema: str) -> None:
    controllers = delta.Controllers()
    delta.add_controller(controllers, TaskController())
    config = delta.Config(schema=schema, poll_interval=0.1, inform_interval=-1)
    async with delta.open_delta_client(dsn, controllers, config=config) as client:
        await client.inform(Task("syncs"))
        with trio.fail_after(10):
            while (
                row := await client.get_resource("task", "syncs")
            ) is None or row.state is not delta.ResourceState.SYNCED:
                await trio.sleep(0.05)


def test_the_owner_of_a_pre_created_schema_can_migrate_it(own_pg: OwnServer) -> None:
    """The third documented way. (Was a bug found here, fixed: migrate ran
    `create schema if not exists`, which needs CREATE on the database even
    when the schema exists.)"""
    suffix = uuid.uuid4().hex[:8]
    role, schema = f"td_owner_{suffix}", f"s_{suffix}"
    with psycopg.connect(own_pg.dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("create role {} login").format(sql.Identifier(role)))
        conn.execute(
            sql.SQL("create schema {} authorization {}").format(
                sql.Identifier(schema), sql.Identifier(role)
            )
        )
    role_dsn = _dsn_for(own_pg, role, "postgres")
    try:
        trio.run(lambda: delta.migrate(role_dsn, schema=schema))
        trio.run(lambda: delta.migrate(role_dsn, schema=schema))  # and again: current
        trio.run(_one_task_synced, role_dsn, schema)
    finally:
        with psycopg.connect(own_pg.dsn, autocommit=True) as conn:
            conn.execute(sql.SQL("drop schema if exists {} cascade").format(sql.Identifier(schema)))
            conn.execute(sql.SQL("drop role {}").format(sql.Identifier(role)))
