"""Every example, and README's quickstart, runs as written."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import trio

ROOT = Path(__file__).resolve().parent.parent


async def run(args: list[str], env_dsn: str | None = None, schema: str | None = None) -> str:
    env = {"TRIO_DELTA_DSN": env_dsn} if env_dsn else {}
    if schema is not None:
        env["EXAMPLE_SCHEMA"] = schema
    import os

    with trio.fail_after(120):
        proc = await trio.run_process(
            args,
            cwd=ROOT,
            capture_stdout=True,
            capture_stderr=True,
            check=False,
            env={**os.environ, **env},
        )
    out = proc.stdout.decode() + proc.stderr.decode()
    assert proc.returncode == 0, out
    return out


async def test_informer_example_runs(pg_dsn: str) -> None:
    out = await run([sys.executable, "examples/informer.py", pg_dsn])
    assert "first run: published 50 articles" in out
    assert "a3 -> 'Article 3 (edited)'" in out


async def test_example_controller_tests_pass() -> None:
    out = await run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "examples/test_user_controller.py",
        ]
    )
    assert "2 passed" in out


async def test_readme_quickstart_runs(pg_dsn: str, tmp_path: Path) -> None:
    readme = (ROOT / "README.md").read_text()
    (code,) = re.findall(r"```python\n(.*?)```", readme, re.S)
    assert 'DSN = "host=127.0.0.1 user=postgres dbname=test"' in code
    script = tmp_path / "quickstart.py"
    script.write_text(code.replace('"host=127.0.0.1 user=postgres dbname=test"', repr(pg_dsn)))
    out = await run([sys.executable, str(script)])
    assert "syncing bob@hello.com attempt 1" in out
    out = await run([sys.executable, str(script)])  # and again, on the same schema
    assert "informed; already existed: True" in out


async def test_http_sync_example_runs(pg_dsn: str) -> None:
    out = await run([sys.executable, "examples/http_sync.py", pg_dsn])
    assert "informer fetched 45 items in 3 pages" in out
    assert "informer fetched 5 items, those updated after 2030-01-01 00:00:45" in out
    assert "converged: 44 items published, 2 archived, 0 failing" in out
    assert "retried after an error: sku-007" in out


async def test_users_example_runs(pg_dsn: str) -> None:
    out = await run([sys.executable, "examples/users.py", pg_dsn])
    assert "informer: 20 users synced" in out
    assert "inform: bob new=True, stale copy changed anything=False" in out
    assert "schedule_inform: 2 changed users re-synced" in out
    assert "converged: True; 22 users" in out


async def test_sync_producer_example_runs(pg_dsn: str, schema: str) -> None:
    out = await run([sys.executable, "examples/sync_producer.py", pg_dsn], schema=schema)
    assert "imported 2 orders: o-1, o-2" in out
    assert "refused: object 1: shipment: id must be 1-254 characters, got 0 (index 1)" in out
    assert "o-1 again: changed=False" in out
    assert "orders: ['o-1', 'o-2']" in out
    assert "shipments: [('o-1', 'scheduled'), ('o-2', 'scheduled')]" in out


async def test_trio_app_example_runs(pg_dsn: str, schema_name: str) -> None:
    out = await run([sys.executable, "examples/trio_app.py", pg_dsn], schema=schema_name)
    assert "INV-2: rolled back" in out
    assert "mailing invoice INV-1 (42.50)" in out
    assert "mailing invoice INV-2" not in out
    assert "resources: [('INV-1', 'synced')]" in out


async def test_asyncio_http_worker_example_runs(pg_dsn: str, schema_name: str) -> None:
    out = await run([sys.executable, "examples/asyncio_http_worker.py", pg_dsn], schema=schema_name)
    assert "/home: 'Page /home'" in out
    assert "/home: object_synced" in out
    assert "asyncio side: request to slow cancelled" in out
    assert "/slow: object_failed" in out
