"""`trio-delta migrate`, --help everywhere, and usage errors (exit 2)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import sql

COMMANDS = [
    [],
    ["migrate"],
    ["status"],
    ["resources"],
    ["resources", "list"],
    ["resources", "show"],
    ["resources", "retry"],
    ["resources", "invalidate"],
    ["resources", "delete"],
    ["run"],
    ["demo"],
]


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "trio-delta")
def test_every_command_explains_itself_and_its_exit_codes(cli: Any, command: list[str]) -> None:
    result = cli(*command, "--help")
    assert result.code == 0, result.err
    assert "Usage: trio-delta" in result.out
    assert "Exit codes: 0 ok, 1 failure" in result.out
    assert "130 interrupted" in result.out


def test_migrate_check_says_what_is_missing_then_migrate_applies_it(
    cli: Any, pg_dsn: str, schema_name: str
) -> None:
    behind = cli("migrate", "--dsn", pg_dsn, "--schema", schema_name, "--check")
    assert behind.code == 3
    assert "is behind: at version 0" in behind.out
    assert "0001_initial" in behind.out
    assert "0002_priorities_and_snoozes" in behind.out
    assert "0003_pauses" in behind.out
    assert "0004_rate_limits" in behind.out
    assert sql(pg_dsn, "select 1 from pg_namespace where nspname = %s", [schema_name]) == []

    applied = cli("migrate", "--dsn", pg_dsn, "--schema", schema_name)
    assert applied.code == 0, applied.err
    assert "applied migrations 1, 2, 3, 4" in applied.out
    versions = f'select version from "{schema_name}".migrations order by version'
    assert sql(pg_dsn, versions) == [(1,), (2,), (3,), (4,)]

    again = cli("migrate", "--dsn", pg_dsn, "--schema", schema_name)
    assert (again.code, again.err) == (0, "")
    assert "already current" in again.out

    current = cli("migrate", "--dsn", pg_dsn, "--schema", schema_name, "--check")
    assert current.code == 0
    assert "is current (version 4)" in current.out


def test_schema_and_dsn_come_from_the_environment(
    cli: Any, pg_dsn: str, schema_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TRIO_DELTA_DSN", pg_dsn)
    monkeypatch.setenv("TRIO_DELTA_SCHEMA", schema_name)
    assert cli("migrate", "--check").code == 3
    assert cli("migrate").code == 0
    assert cli("migrate", "--check").code == 0


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["migrate", "--schema", "Bad-Schema"], "invalid schema 'Bad-Schema'"),
        (["status", "--schema", "1abc"], "invalid schema '1abc'"),
        (["status", "--kind", "Not A Kind"], "invalid kind 'Not A Kind'"),
        (["resources", "list", "--namespace", "a__b"], "invalid namespace 'a__b'"),
        (["resources", "list", "--state", "sleeping"], "'sleeping' is not one of"),
        (["resources", "list", "--limit", "0"], "--limit"),
        (["resources", "retry"], "--all"),
        (["resources", "retry", "some-id"], "OBJECT_IDs need --kind"),
        (["resources", "retry", "--state", "synced"], "'synced' is not one of"),
        (["resources", "show", "cli-item"], "Missing argument 'OBJECT_ID'"),
        (["run", "--namespace", "x=zero", "tests.cli.app:controllers"], "WORKERS"),
        (["migrate", "--no-such-option"], "No such option"),
        (["no-such-command"], "No such command"),
    ],
)
def test_usage_errors_exit_2_with_one_line(
    cli: Any, pg_dsn: str, args: list[str], expected: str
) -> None:
    needs_dsn = args[0] in {"migrate", "status", "resources", "run"} and len(args) > 1
    result = cli(*args, *(["--dsn", pg_dsn] if needs_dsn else []))
    assert result.code == 2, (result.out, result.err)
    assert len(result.err_lines) == 1, result.err
    assert expected in result.err
    assert "--help" in result.err
    assert result.out == ""


def test_no_database_given_is_a_usage_error(cli: Any) -> None:
    for args in (
        ["migrate"],
        ["status"],
        ["resources", "list"],
        ["run", "tests.cli.app:controllers"],
    ):
        result = cli(*args)
        assert result.code == 2, args
        assert result.err_lines == [
            "trio-delta: error: no database given: pass --dsn DSN or set TRIO_DELTA_DSN "
            "(or libpq's PGHOST/PGDATABASE)"
        ]


def test_version(cli: Any) -> None:
    result = cli("--version")
    assert result.code == 0
    assert result.out.startswith("trio-delta, version ")
