"""`trio-delta run` whose works block in threads that ignore cancellation:
the forced stop hands their rows back before waiting for them (a SIGKILL
then loses nothing), and a second SIGTERM ends the process although the
threads are still blocked."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator

import pytest

from tests.cli.conftest import DSN_ENV, ROOT
from tests.cli.test_cli_run_stops_on_signals import Runner, _states

#: More than Trio's default thread limit (40): the store's own threads (to
#: open connections) must not wait for the user's.
MANY = 48


def blocked(items: int) -> dict[str, tuple[str, int]]:
    return {f"block-{i}": ("pending", 1) for i in range(items)}


def handed_back(items: int) -> dict[str, tuple[str, int]]:
    return {f"block-{i}": ("scheduled", 0) for i in range(items)}


@pytest.fixture
def start_blocked(pg_dsn: str, migrated: str) -> Iterator[Callable[[int], Runner]]:
    """Start `trio-delta run` on ``items`` works that block in threads; wait
    until all of them are running."""
    runners: list[Runner] = []

    def start(items: int) -> Runner:
        env = {k: v for k, v in os.environ.items() if k not in DSN_ENV}
        env["CLI_TEST_ITEMS"] = str(items)
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "trio_delta",
                "run",
                "tests.cli.blocking_app:controllers",
                "--namespace",
                f"default={items}",
                "--shutdown-grace",
                "1",
                "--dsn",
                pg_dsn,
                "--schema",
                migrated,
            ],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        runner = Runner(proc)
        runners.append(runner)
        runner.wait_for(
            lambda: _states(pg_dsn, migrated) == blocked(items), "every work to block in its thread"
        )
        return runner

    yield start
    for runner in runners:
        if runner.proc.poll() is None:
            runner.proc.kill()
            runner.proc.wait()


@pytest.mark.parametrize("items", [4, MANY])
def test_rows_are_handed_back_before_waiting_for_blocked_threads(
    start_blocked: Callable[[int], Runner], pg_dsn: str, migrated: str, items: int
) -> None:
    runner = start_blocked(items)
    runner.proc.send_signal(signal.SIGTERM)
    runner.wait_for(
        lambda: "shutdown grace of 1s over" in runner.stderr, "the forced stop to begin", within=10
    )
    time.sleep(1.0)
    assert runner.proc.poll() is None  # still waiting for the threads
    runner.proc.kill()  # as a supervisor would, tired of waiting
    runner.proc.wait(10)

    assert _states(pg_dsn, migrated) == handed_back(items), runner.stderr
    # Trio runs at most 40 threads by default: works waiting for one were
    # cancelled like any other; the stuck ones are named (up to 20).
    (line,) = [line for line in runner.lines if "work items ignore cancellation" in line]
    found = re.search(r" (\d+) running work items ignore cancellation", line)
    assert found is not None
    stuck = int(found.group(1))
    assert 1 <= stuck <= min(items, 40)
    assert len(re.findall(r"cli-item 'block-\d+'", line)) == min(stuck, 20)


def test_second_sigterm_exits_although_threads_are_blocked(
    start_blocked: Callable[[int], Runner], pg_dsn: str, migrated: str
) -> None:
    runner = start_blocked(4)
    runner.proc.send_signal(signal.SIGTERM)
    runner.wait_for(lambda: "SIGTERM: stopping gracefully" in runner.stderr, "the first signal")
    runner.proc.send_signal(signal.SIGTERM)
    code, took = runner.finish(within=15)

    assert took < 5, runner.stderr
    assert code == 128 + signal.SIGTERM, runner.stderr
    assert _states(pg_dsn, migrated) == handed_back(4)
    assert "Traceback" not in runner.stderr
