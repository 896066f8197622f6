"""Start ``client_runner.py`` processes and read what they report."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Generator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

RUNNER = Path(__file__).with_name("client_runner.py")


class RunnerProcess:
    """One client process; its state file and work log live in ``directory``."""

    def __init__(
        self,
        name: str,
        directory: Path,
        dsn: str,
        schema: str,
        *,
        block: bool = False,
        inform: int = 0,
        **config: float,
    ) -> None:
        self.name = name
        self.state_path = directory / f"{name}.state.json"
        self.work_log = directory / f"{name}.work.log"
        self.stderr_path = directory / f"{name}.stderr"
        self.args = [
            sys.executable,
            str(RUNNER),
            "--dsn",
            dsn,
            "--schema",
            schema,
            "--state",
            str(self.state_path),
            "--work-log",
            str(self.work_log),
            "--inform",
            str(inform),
        ]
        if block:
            self.args.append("--block")
        for key, value in config.items():
            self.args += [f"--{key.replace('_', '-')}", str(value)]
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.stderr_path.open("wb") as stderr:
            self.proc = subprocess.Popen(
                self.args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=stderr
            )

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def state(self) -> dict[str, Any] | None:
        try:
            return json.loads(self.state_path.read_text())
        except FileNotFoundError:
            return None

    @property
    def running(self) -> bool:
        state = self.state()
        return state is not None and state["phase"] == "running"

    @property
    def id(self) -> str:
        state = self.state()
        assert state is not None, f"{self.name} has not reported yet"
        return state["id"]

    @property
    def reports_leader(self) -> bool:
        state = self.state()
        return state is not None and state["phase"] == "running" and state["is_leader"]

    def work_events(self) -> list[tuple[str, int, str, float]]:
        """``(object_id, attempt, "start", "end" or "cancelled", unix time)``
        of every work call, in order (a line cut short by a kill is left out)."""
        try:
            lines = self.work_log.read_text().splitlines()
        except FileNotFoundError:
            return []
        return [
            (object_id, int(attempt), event, float(at))
            for object_id, attempt, event, at in (
                line.split() for line in lines if len(line.split()) == 4
            )
        ]

    def work_started(self) -> list[tuple[str, int]]:
        """``(object_id, attempt)`` of every work call started, in order."""
        return [(o, a) for o, a, event, _ in self.work_events() if event == "start"]

    def send(self, sig: signal.Signals) -> None:
        os.kill(self.pid, sig)

    def wait(self, timeout: float) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout)

    def stderr(self) -> str:
        try:
            return self.stderr_path.read_text()[-3000:]
        except FileNotFoundError:
            return ""

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


@contextmanager
def started(*procs: RunnerProcess) -> Generator[None]:
    """Start ``procs``; however the block ends, every one is killed."""
    try:
        for proc in procs:
            proc.start()
        yield
    finally:
        for proc in procs:
            proc.kill()


def describe(*procs: RunnerProcess) -> str:
    """States and stderr tails, for assertion messages."""
    return "\n".join(f"--- {p.name}: {p.state()}\n{p.stderr()}" for p in procs)
