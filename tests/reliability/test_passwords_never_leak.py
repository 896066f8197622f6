"""A password in the DSN never shows: not in logs (DEBUG, every logger), not in
exceptions (their text, repr and printed traceback, chained causes
included), not in ``repr`` of the client or its store, not in CLI output.

Runs on the session's own server, where roles with passwords are created and
``pg_hba.conf`` makes them authenticate (scram-sha-256) so that a wrong
password really fails; both are undone afterwards.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
import traceback
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import quote

import psycopg
import pytest
import trio
from psycopg import sql

import trio_delta as delta
from tests.reliability.conftest import OwnServer, own_sql
from trio_delta.cli import main as cli_main

ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Role:
    name: str
    password: str

    def secrets(self) -> list[str]:
        """Every form the password could be printed in."""
        pw = self.password
        return sorted({pw, quote(pw, safe=""), quote(pw), pw.replace("'", "\\'")})


ROLES = [Role("td_secret", "S3cr3t-pw"), Role("td_secret_q", "p@ss w'rd\"%;x")]


def url_dsn(server: OwnServer, role: Role, password: str | None = None) -> str:
    socket_dir = server.dsn.split("host=", 1)[1]
    pw = quote(role.password if password is None else password, safe="")
    return f"postgresql://{role.name}:{pw}@/postgres?host={socket_dir}"


def kv_dsn(server: OwnServer, role: Role, password: str | None = None) -> str:
    socket_dir = server.dsn.split("host=", 1)[1]
    pw = (role.password if password is None else password).replace("\\", "\\\\")
    pw = pw.replace("'", "\\'")
    return f"host={socket_dir} dbname=postgres user={role.name} password='{pw}'"


@pytest.fixture
def secret_roles(own_pg: OwnServer) -> Iterator[tuple[list[Role], str]]:
    """The roles, allowed to use (and re-run migrate on) a migrated schema,
    with password authentication enforced for them."""
    schema = f"p_{uuid.uuid4().hex[:12]}"
    hba = own_pg.hba_path.read_text()
    names = ",".join(r.name for r in ROLES)
    own_pg.hba_path.write_text(f"local all {names} scram-sha-256\n{hba}")
    with psycopg.connect(own_pg.dsn, autocommit=True) as conn:
        for role in ROLES:
            if _exists(conn, role.name):  # left over by an interrupted run
                conn.execute(sql.SQL("drop owned by {} cascade").format(sql.Identifier(role.name)))
                conn.execute(sql.SQL("drop role {}").format(sql.Identifier(role.name)))
            conn.execute(
                sql.SQL("create role {} login password {}").format(
                    sql.Identifier(role.name), sql.Literal(role.password)
                )
            )
    trio.run(lambda: delta.migrate(own_pg.dsn, schema=schema))
    with psycopg.connect(own_pg.dsn, autocommit=True) as conn:
        for role in ROLES:
            ident, name = sql.Identifier(schema), sql.Identifier(role.name)
            # (migrate runs `create schema if not exists`: CREATE on the database)
            conn.execute(sql.SQL("grant create on database postgres to {}").format(name))
            conn.execute(sql.SQL("grant all on schema {} to {}").format(ident, name))
            conn.execute(sql.SQL("grant all on all tables in schema {} to {}").format(ident, name))
    own_pg.reload()
    try:
        yield ROLES, schema
    finally:
        own_pg.hba_path.write_text(hba)
        own_pg.reload()
        with psycopg.connect(own_pg.dsn, autocommit=True) as conn:
            conn.execute(sql.SQL("drop schema if exists {} cascade").format(sql.Identifier(schema)))
            for role in ROLES:
                conn.execute(sql.SQL("drop owned by {} cascade").format(sql.Identifier(role.name)))
                conn.execute(sql.SQL("drop role {}").format(sql.Identifier(role.name)))


def _exists(conn: psycopg.Connection[Any], role: str) -> bool:
    return bool(conn.execute("select 1 from pg_roles where rolname = %s", [role]).fetchone())


def assert_clean(text: str, where: str) -> None:
    for role in ROLES:
        for secret in role.secrets():
            assert secret not in text, f"password of {role.name} in {where}: {text[:500]!r}"


def exception_text(exc: BaseException) -> str:
    """Everything an error report shows: the printed traceback (which follows
    causes and unsuppressed contexts) plus str and repr along that chain."""
    parts = ["".join(traceback.format_exception(exc))]
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        parts += [str(current), repr(current), repr(current.args)]
        current = (
            current.__cause__
            if current.__suppress_context__
            else (current.__cause__ or current.__context__)
        )
    return "\n".join(parts)


def log_text(caplog: pytest.LogCaptureFixture) -> str:
    lines = []
    for record in caplog.records:
        lines.append(record.getMessage())
        lines.append(repr(record.args))
        if record.exc_info:
            lines.append("".join(traceback.format_exception(*record.exc_info)))
        if record.exc_text:
            lines.append(record.exc_text)
    return "\n".join(lines)


@dataclass
class Job:
    kind: ClassVar[str] = "job"
    key: str

    def id(self) -> str:
        return self.key


class JobController(delta.Controller[Job]):
    async def work(self, resource: delta.Resource[Job]) -> None:
        if resource.object.key == "bad":
            raise RuntimeError("fails on purpose")


@pytest.mark.parametrize("driver", ["native", "trio-asyncio"])
@pytest.mark.parametrize("form", ["url", "kv"])
async def test_a_working_client_never_shows_the_password(
    own_pg: OwnServer,
    secret_roles: tuple[list[Role], str],
    caplog: pytest.LogCaptureFixture,
    driver: str,
    form: str,
) -> None:
    caplog.set_level(logging.DEBUG)
    roles, schema = secret_roles
    role = roles[0] if form == "url" else roles[1]
    dsn = url_dsn(own_pg, role) if form == "url" else kv_dsn(own_pg, role)
    await delta.migrate(dsn, schema=schema)
    controllers = delta.Controllers()
    delta.add_controller(controllers, JobController())
    config = delta.Config(
        schema=schema,
        driver=driver,
        poll_interval=0.1,
        leader_ttl=1.0,
        maintenance_interval=0.2,
        retry_policy=lambda attempt: 0.05,
        max_attempts=2,
        shutdown_grace=1.0,
    )
    async with delta.open_delta_client(dsn, controllers, config=config) as client:
        shown = [
            repr(client),
            str(client),
            repr(client._store),
            str(client._store),
            repr(client.config),
            repr(client.stats),
        ]
        await client.inform(Job("good"))
        await client.inform(Job("bad"))
        with trio.fail_after(10):
            while True:
                rows = {r.object_id: r.state for r in await client.list_resources()}
                if rows == {
                    "good": delta.ResourceState.SYNCED,
                    "bad": delta.ResourceState.DEGRADED,
                }:
                    break
                await trio.sleep(0.05)
        with trio.fail_after(10):
            while not client.is_leader:
                await trio.sleep(0.05)
    for text in shown:
        assert_clean(text, "repr")
    assert len(caplog.records) > 5, "nothing was logged: the check would prove nothing"
    assert_clean(log_text(caplog), "the log")


def who_connected(server: OwnServer, role: Role) -> bool:
    rows = own_sql(server, "select count(*) from pg_stat_activity where usename = %s", [role.name])
    return bool(rows[0][0])


@pytest.mark.parametrize("driver", ["native", "trio-asyncio"])
@pytest.mark.parametrize("case", ["wrong password", "unreachable host", "malformed"])
async def test_errors_never_show_the_password(
    own_pg: OwnServer,
    secret_roles: tuple[list[Role], str],
    caplog: pytest.LogCaptureFixture,
    driver: str,
    case: str,
) -> None:
    caplog.set_level(logging.DEBUG)
    roles, schema = secret_roles
    role = roles[1]
    dsns = {
        "wrong password": [
            url_dsn(own_pg, role, password=role.password[::-1]),
            kv_dsn(own_pg, role, password=role.password + "x"),
        ],
        "unreachable host": [
            f"postgresql://{role.name}:{quote(role.password, safe='')}@127.0.0.1:1/postgres",
            f"host=127.0.0.1 port=1 user={role.name} password={quote(role.password)}",
        ],
        "malformed": [
            f"postgresql://{role.name}:{quote(role.password, safe='')}@127.0.0.1:notaport/x",
            f"host='unterminated password={quote(role.password)}",
            f"user={role.name} password={quote(role.password)} nosuchoption=1",
        ],
    }[case]
    # Also the wrong/garbled passwords themselves must not show.
    extra = [role.password[::-1], role.password + "x"]
    config = delta.Config(schema=schema, driver=driver)
    for dsn in dsns:
        for attempt in (_open_client(dsn, config), delta.migrate(dsn, schema=schema)):
            with pytest.raises((delta.StoreError, delta.ConfigError)) as info:
                await attempt
            text = exception_text(info.value)
            assert_clean(text, f"{case} exception")
            for secret in extra:
                assert secret not in text
            if case == "wrong password":
                assert "password authentication failed" in text
                assert isinstance(info.value, delta.StoreError)
    assert_clean(log_text(caplog), "the log")


async def _open_client(dsn: str, config: delta.Config) -> None:
    controllers = delta.Controllers()
    delta.add_controller(controllers, JobController())
    async with delta.open_delta_client(dsn, controllers, config=config):
        raise AssertionError("the client should not have started")


def test_the_command_line_never_shows_the_password(
    own_pg: OwnServer,
    secret_roles: tuple[list[Role], str],
    capsys: pytest.CaptureFixture[str],
) -> None:
    roles, schema = secret_roles
    role = roles[0]
    good = url_dsn(own_pg, role)
    wrong = url_dsn(own_pg, role, password="not-" + role.password)
    outputs: list[str] = []
    for dsn, expect in ((good, 0), (wrong, 1)):
        for args in (
            ["migrate"],
            ["migrate", "--check"],
            ["status"],
            ["status", "--json"],
            ["resources", "list", "--json"],
            ["-v", "status"],
        ):
            code = cli_main([*args, "--dsn", dsn, "--schema", schema])
            out, err = capsys.readouterr()
            assert code == expect, (args, code, err)
            outputs.append(out + err)
    for text in outputs:
        assert_clean(text, "CLI output")
        assert "not-" + role.password not in text

    # `run` logs at INFO and says where it runs: through the real entry point.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PG", "TRIO_DELTA"))}
    env["TRIO_DELTA_DSN"] = good
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "trio_delta",
            "-v",
            "run",
            "tests.cli.app:controllers",
            "--schema",
            schema,
            "--shutdown-grace",
            "0.5",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 20
        while not who_connected(own_pg, role) and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(0.5)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=20)
    finally:
        proc.kill()
    text = (out + err).decode("utf-8", "replace")
    assert proc.returncode == 0, text[-2000:]
    assert "running" in text, text[-2000:]
    assert role.name in text, text[-2000:]  # it says where, without the password
    assert_clean(text, "trio-delta run output")
