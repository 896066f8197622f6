"""Failures exit 1 with one line on stderr, never a traceback, never a password."""

from __future__ import annotations

from typing import Any

import pytest

from tests.cli.conftest import BAD_DSN, PASSWORD, run_subprocess

DB_COMMANDS = [
    ["migrate"],
    ["migrate", "--check"],
    ["status"],
    ["status", "--json"],
    ["resources", "list"],
    ["resources", "show", "cli-item", "x"],
    ["resources", "retry", "--all"],
    ["resources", "invalidate", "--all"],
    ["resources", "delete", "--all", "--hard"],
    ["run", "tests.cli.app:controllers"],
    ["demo"],
]


@pytest.mark.parametrize("command", DB_COMMANDS, ids=" ".join)
def test_unreachable_server_is_one_line_and_exit_1(cli: Any, command: list[str]) -> None:
    result = cli(*command, "--dsn", BAD_DSN)
    assert result.code == 1, (result.out, result.err)
    assert len(result.err_lines) == 1, result.err
    assert result.err.startswith("trio-delta: error: ")
    assert "127.0.0.1:1" in result.err  # says which server, without the password
    assert PASSWORD not in result.out + result.err


def test_unreachable_server_through_the_real_entry_point(pg_dsn: str) -> None:
    proc = run_subprocess("status", "--dsn", BAD_DSN)
    assert proc.returncode == 1
    assert len(proc.stderr.splitlines()) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    assert PASSWORD not in proc.stdout + proc.stderr

    verbose = run_subprocess("-v", "status", "--dsn", BAD_DSN)
    assert verbose.returncode == 1
    assert PASSWORD not in verbose.stdout + verbose.stderr


@pytest.mark.parametrize(
    "dsn",
    [
        f"host='unterminated password={PASSWORD}",
        f"postgresql://postgres:{PASSWORD}@127.0.0.1:notaport/test",
        f"host=127.0.0.1 port=1 user=postgres password={PASSWORD} dbname=test",
    ],
)
def test_malformed_dsn_is_one_line_without_the_password(cli: Any, dsn: str) -> None:
    for command in (["migrate"], ["status"], ["resources", "list"]):
        result = cli(*command, "--dsn", dsn)
        assert result.code == 1, (command, result.err)
        assert len(result.err_lines) == 1, result.err
        assert PASSWORD not in result.out + result.err


def test_password_in_dsn_from_the_environment_is_never_printed(
    cli: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TRIO_DELTA_DSN", BAD_DSN)
    result = cli("-v", "status")
    assert result.code == 1
    assert PASSWORD not in result.out + result.err


def test_unmigrated_schema_says_how_to_fix_it(cli: Any, pg_dsn: str, schema_name: str) -> None:
    for command in (
        ["status"],
        ["resources", "list"],
        ["resources", "retry", "--all"],
        ["run", "tests.cli.app:controllers"],
    ):
        result = cli(*command, "--dsn", pg_dsn, "--schema", schema_name)
        assert result.code == 1, (command, result.err)
        assert len(result.err_lines) == 1, result.err
        assert "trio-delta migrate" in result.err


def test_unknown_kind_is_one_line_and_exit_1(cli: Any, pg_dsn: str, migrated: str) -> None:
    for command in (
        ["status", "--kind", "nosuch"],
        ["resources", "list", "--kind", "nosuch"],
        ["resources", "show", "nosuch", "x"],
        ["resources", "retry", "--kind", "nosuch"],
    ):
        result = cli(*command, "--dsn", pg_dsn, "--schema", migrated)
        assert result.code == 1, (command, result.err)
        assert result.err_lines == [
            f"trio-delta: error: unknown kind 'nosuch' in schema '{migrated}' (known: none yet)"
        ]


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("tests.cli.app", "expected MODULE:ATTR"),
        ("tests.cli.no_such_module:controllers", "cannot import 'tests.cli.no_such_module'"),
        ("tests.cli.app:no_such_attr", "has no attribute 'no_such_attr'"),
        ("tests.cli.app:not_controllers", "is a int, not a trio_delta.Controllers"),
    ],
)
def test_run_with_a_bad_target_is_a_usage_error(
    cli: Any, pg_dsn: str, migrated: str, target: str, expected: str
) -> None:
    result = cli("run", target, "--dsn", pg_dsn, "--schema", migrated)
    assert result.code == 2, result.err
    assert len(result.err_lines) == 1, result.err
    assert expected in result.err
