"""``trio-delta run --http``: probes and metrics over real HTTP.

A real ``trio-delta run`` process with the CLI tests' controllers, on a
Postgres of the test's own: ``/metrics`` counts what was worked (checked
against the database), ``/readyz`` turns 503 while the database is stopped
and 200 again once it is back, while ``/healthz`` stays 200 throughout;
SIGTERM then stops the process cleanly.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from tests.reliability.conftest import OwnServer, own_sql

ROOT = Path(__file__).resolve().parents[2]
ITEMS = 6


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()
    except (urllib.error.URLError, ConnectionError):
        return 0, ""


def wait_for(predicate: Callable[[], bool], what: str, within: float = 20) -> float:
    start = time.monotonic()
    while not predicate():
        if time.monotonic() - start > within:
            raise AssertionError(f"not within {within}s: {what}")
        time.sleep(0.1)
    return time.monotonic() - start


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_run_serves_probes_and_metrics(own_pg: OwnServer, own_schema: str) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {**os.environ, "CLI_TEST_ITEMS": str(ITEMS), "PYTHONPATH": str(ROOT)}
    env.pop("TRIO_DELTA_DSN", None)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "trio_delta",
            "run",
            "tests.cli.app:controllers",
            "--dsn",
            own_pg.dsn,
            "--schema",
            own_schema,
            "--http",
            f"127.0.0.1:{port}",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for(lambda: get(f"{base}/readyz")[0] == 200, "ready")
        synced = f"select count(*) from {own_schema}.resources where state = 'synced'"
        wait_for(lambda: own_sql(own_pg, synced)[0][0] == ITEMS, "every item synced")

        def scraped() -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
            status, text = get(f"{base}/metrics")
            assert status == 200, (status, text)
            return samples(text)

        works = (
            "trio_delta_works_total",
            (("kind", "cli-item"), ("namespace", "default"), ("outcome", "synced")),
        )
        wait_for(lambda: scraped().get(works) == ITEMS, "the synced works counted")
        metrics = scraped()
        assert metrics[("trio_delta_informer_objects_total", (("kind", "cli-item"),))] == ITEMS
        assert (
            metrics[("trio_delta_informer_runs_total", (("kind", "cli-item"), ("result", "ok")))]
            >= 1
        )
        assert metrics[("trio_delta_outcomes_written_total", ())] == ITEMS
        assert metrics[("trio_delta_is_leader", ())] == 1
        claimed = metrics[("trio_delta_claimed_rows_total", (("namespace", "default"),))]
        assert claimed == ITEMS
        status, body = get(f"{base}/healthz")
        assert status == 200
        assert json.loads(body)["running"] is True

        # -- the database goes away: unready, still alive -----------------
        own_pg.stop()
        wait_for(lambda: get(f"{base}/readyz")[0] == 503, "unready while the database is down")
        status, body = get(f"{base}/readyz")
        assert json.loads(body)["database_error"]
        assert get(f"{base}/healthz")[0] == 200
        own_pg.start()
        back = wait_for(lambda: get(f"{base}/readyz")[0] == 200, "ready again")
        print(f"ready again {back:.2f}s after the database came back")
        assert get(f"{base}/nowhere")[0] == 404

        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        _, err = proc.communicate(timeout=10)
        print(err[-3000:])
