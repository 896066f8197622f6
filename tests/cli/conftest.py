"""Helpers for the ``trio-delta`` command's tests.

Commands run in-process through ``trio_delta.cli.main`` (the entry point
itself, exit code and all) with output captured by ``capsys``; ``run`` and a
few error paths run as real subprocesses.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import trio

import trio_delta as delta
from tests.cli.app import Item, make_controllers
from tests.conftest import drop_schema
from trio_delta.cli import main

ROOT = Path(__file__).resolve().parents[2]
PASSWORD = "s3cret"
BAD_DSN = f"postgresql://postgres:{PASSWORD}@127.0.0.1:1/test"
DSN_ENV = (
    "TRIO_DELTA_DSN",
    "TRIO_DELTA_SCHEMA",
    "PGHOST",
    "PGHOSTADDR",
    "PGDATABASE",
    "PGSERVICE",
    "PGPORT",
    "PGUSER",
)


@dataclass
class Result:
    code: int
    out: str
    err: str

    @property
    def json(self) -> Any:
        return json.loads(self.out)

    @property
    def err_lines(self) -> list[str]:
        return self.err.splitlines()


@pytest.fixture(autouse=True)
def _no_dsn_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in DSN_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("COLUMNS", "200")  # wide tables: whole words in assertions


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]) -> Any:
    def invoke(*args: str) -> Result:
        capsys.readouterr()
        code = main(list(args))
        captured = capsys.readouterr()
        return Result(code, captured.out, captured.err)

    return invoke


def run_subprocess(
    *args: str, env: dict[str, str] | None = None, timeout: float = 30
) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if k not in DSN_ENV}
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "trio_delta", *args],
        cwd=ROOT,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.fixture
def migrated(pg_dsn: str, schema_name: str) -> str:
    trio.run(lambda: delta.migrate(pg_dsn, schema=schema_name))
    return schema_name


# The population every resource test starts from:
#   default: good-1, good-2 (tag blue), good-3 (tag red) synced;
#            bad-1 degraded (1 attempt); bad-2 failed (retry in an hour)
#   other:   good-4 synced
EXPECTED = {
    ("default", "synced"): 3,
    ("default", "degraded"): 1,
    ("default", "failed"): 1,
    ("other", "synced"): 1,
}


async def _populate(dsn: str, schema: str) -> None:
    config = delta.Config(
        schema=schema,
        poll_interval=0.1,
        shutdown_grace=1.0,
        inform_interval=-1,
        retry_policy=lambda attempt: 3600.0,
    )
    namespaces = {
        "default": delta.NamespaceConfig(max_workers=5),
        "other": delta.NamespaceConfig(max_workers=2),
    }
    async with delta.open_delta_client(
        dsn, make_controllers(), namespaces=namespaces, config=config
    ) as client:
        for name, tags in (("good-1", ["blue"]), ("good-2", ["blue", "big"]), ("good-3", ["red"])):
            await client.inform(Item(name), delta.InformOpts(tags=tags))
        await client.inform(Item("bad-1"), delta.InformOpts(max_attempts=1))
        await client.inform(Item("bad-2"), delta.InformOpts(max_attempts=5))
        await client.inform(Item("good-4"), delta.InformOpts(namespace="other"))
        with trio.fail_after(10):
            while True:
                rows = await client.list_resources(kind="cli-item")
                counts: dict[tuple[str, str], int] = {}
                for row in rows:
                    key = (row.namespace, row.state.value)
                    counts[key] = counts.get(key, 0) + 1
                if counts == EXPECTED:
                    return
                await trio.sleep(0.05)


@pytest.fixture
def populated(pg_dsn: str, migrated: str) -> str:
    trio.run(_populate, pg_dsn, migrated)
    return migrated


@pytest.fixture(scope="module")
def shared_population(pg_dsn: str) -> Iterator[str]:
    """A populated schema for tests that only read."""
    name = f"t_{uuid.uuid4().hex[:16]}"
    trio.run(lambda: delta.migrate(pg_dsn, schema=name))
    trio.run(_populate, pg_dsn, name)
    yield name
    drop_schema(pg_dsn, name)
