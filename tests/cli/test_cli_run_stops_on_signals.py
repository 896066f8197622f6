"""`trio-delta run MODULE:ATTR` as a real process: SIGINT/SIGTERM stop it
gracefully with exit 0, a second signal forces the stop."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.cli.conftest import DSN_ENV, PASSWORD, ROOT
from tests.conftest import sql


class Runner:
    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.proc = proc
        self.lines: list[str] = []
        assert proc.stderr is not None
        stream = proc.stderr
        self._reader = threading.Thread(target=lambda: self.lines.extend(stream), daemon=True)
        self._reader.start()

    @property
    def stderr(self) -> str:
        return "".join(self.lines)

    def wait_for(self, predicate: Callable[[], bool], what: str, within: float = 15) -> None:
        deadline = time.monotonic() + within
        while not predicate():
            if self.proc.poll() is not None:
                self._reader.join(2)
                pytest.fail(f"exited {self.proc.returncode} waiting for {what}:\n{self.stderr}")
            if time.monotonic() > deadline:
                pytest.fail(f"timed out waiting for {what}:\n{self.stderr}")
            time.sleep(0.05)

    def finish(self, within: float) -> tuple[int, float]:
        started = time.monotonic()
        code = self.proc.wait(within)
        self._reader.join(2)
        return code, time.monotonic() - started


@pytest.fixture
def start_run(pg_dsn: str, migrated: str) -> Iterator[Callable[..., Runner]]:
    runners: list[Runner] = []

    def start(*args: str, env: dict[str, str] | None = None) -> Runner:
        full_env = {k: v for k, v in os.environ.items() if k not in DSN_ENV}
        full_env.update(env or {})
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "trio_delta",
                "run",
                *args,
                "--dsn",
                pg_dsn,
                "--schema",
                migrated,
            ],
            cwd=ROOT,
            env=full_env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        runner = Runner(proc)
        runners.append(runner)
        return runner

    yield start
    for runner in runners:
        if runner.proc.poll() is None:
            runner.proc.kill()
            runner.proc.wait()


def _states(dsn: str, schema: str) -> dict[str, tuple[str, int]]:
    rows = sql(dsn, f'select object_id, state, attempt from "{schema}".resources')
    return {object_id: (state, attempt) for object_id, state, attempt in rows}


def test_sigint_stops_gracefully_with_exit_0(
    start_run: Callable[..., Runner], pg_dsn: str, migrated: str, cli: Any
) -> None:
    runner = start_run(
        "tests.cli.app:make_controllers",
        "--namespace",
        "default=3",
        "--shutdown-grace",
        "5",
        env={"CLI_TEST_ITEMS": "3"},
    )
    runner.wait_for(lambda: "trio-delta: running cli-item" in runner.stderr, "the ready line")
    runner.wait_for(
        lambda: _states(pg_dsn, migrated) == {f"run-{i}": ("synced", 1) for i in range(3)},
        "the informed items to sync",
    )
    assert "namespaces default=3" in runner.stderr
    (client_id,) = re.findall(r"as client (\S+);", runner.stderr)

    status = cli("status", "--dsn", pg_dsn, "--schema", migrated, "--json")
    assert status.code == 0, status.err
    assert status.json["leader"]["id"] == client_id
    (controller,) = status.json["controllers"]
    assert controller["kind"] == "cli-item"
    assert controller["last_inform_at"] is not None
    assert controller["next_inform_at"] is not None  # the default hourly schedule
    assert status.json["totals"]["synced"] == 3

    runner.proc.send_signal(signal.SIGINT)
    code, took = runner.finish(within=10)
    assert code == 0, runner.stderr
    assert took < 5
    assert "SIGINT: stopping gracefully" in runner.stderr
    assert runner.lines[-1] == "trio-delta: stopped\n"
    assert "Traceback" not in runner.stderr
    assert sql(pg_dsn, f'select count(*) from "{migrated}".leader') == [(0,)]  # resigned


def test_second_signal_forces_the_stop(
    start_run: Callable[..., Runner], pg_dsn: str, migrated: str
) -> None:
    runner = start_run(
        "tests.cli.app:controllers",
        "--shutdown-grace",
        "60",
        env={"CLI_TEST_ITEMS": "1", "CLI_TEST_SLOW": "1"},
    )
    runner.wait_for(
        lambda: _states(pg_dsn, migrated).get("slow-0") == ("pending", 1),
        "the slow item to be worked",
    )

    runner.proc.send_signal(signal.SIGTERM)
    runner.wait_for(lambda: "SIGTERM: stopping gracefully" in runner.stderr, "the first signal")
    time.sleep(0.5)
    assert runner.proc.poll() is None  # waiting for the slow work, within the grace

    runner.proc.send_signal(signal.SIGTERM)
    code, took = runner.finish(within=10)
    assert code == 0, runner.stderr
    assert took < 5
    assert "forcing stop" in runner.stderr
    # The unfinished work was handed back for another client, attempt restored.
    assert _states(pg_dsn, migrated)["slow-0"] == ("scheduled", 0)


def test_run_against_an_unreachable_server() -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "trio_delta",
            "run",
            "tests.cli.app:controllers",
            "--dsn",
            f"postgresql://postgres:{PASSWORD}@127.0.0.1:1/test",
        ],
        cwd=ROOT,
        env={k: v for k, v in os.environ.items() if k not in DSN_ENV},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert proc.returncode == 1
    assert len(proc.stderr.splitlines()) == 1, proc.stderr
    assert PASSWORD not in proc.stdout + proc.stderr


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_during_start_up_stops_at_once(signum: signal.Signals) -> None:
    # A server that accepts connections and never answers: libpq waits for
    # its startup reply until connect_timeout (10 s by default).
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        port = silent.getsockname()[1]
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "trio_delta",
                "run",
                "tests.cli.app:controllers",
                "--dsn",
                f"host=127.0.0.1 port={port} user=postgres dbname=test",
            ],
            cwd=ROOT,
            env={k: v for k, v in os.environ.items() if k not in DSN_ENV},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        runner = Runner(proc)
        try:
            conn, _ = silent.accept()  # the client is connecting now
            with conn:
                time.sleep(0.5)
                proc.send_signal(signum)
                code, took = runner.finish(within=8)
        finally:
            if proc.poll() is None:
                proc.kill()
    assert took < 3, runner.stderr
    assert code == 0, runner.stderr
    assert f"{signum.name}: stopping before the client has started" in runner.stderr
    assert "Traceback" not in runner.stderr
