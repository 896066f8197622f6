"""trio_delta side by side with pgqueuer and procrastinate (issue 7).

One command runs every chosen scenario for every system, interleaved
A B C A B C ... over ``--rounds`` rounds, each run in a fresh subprocess on a
fresh schema (dropped afterwards), and prints a table of medians with min and
max plus the ratio trio_delta / best peer::

    python benchmarks/run.py                      # full sizes, 3 rounds
    python benchmarks/run.py --quick --json out.json --text out.txt
    python benchmarks/run.py --scenarios drain latency --rounds 5
    nox -s bench -- --quick

Scenarios (full size; ``--quick`` shrinks them and says so in the table):

* ``drain``: 20,000 pre-queued resources/jobs, one process, no-op handler:
  jobs/s from starting the worker/client until all are done;
* ``inform``: 100,000 objects written: trio_delta through one informer run
  until all are upserted (a client that works nothing); peers through their
  bulk enqueue API; objects/s;
* ``inform_concurrent``: 20,000 objects informed one per call by 100
  concurrent tasks (a web service informing per request); peers: their
  single enqueue from 100 tasks (pgqueuer through an asyncpg pool of 20,
  procrastinate through its connector's pool);
  objects/s;
* ``drain_defaults``: the drain with every system at its library defaults
  (trio_delta 50 workers and 200-row statements, pgqueuer batches of 10,
  procrastinate one job at a time, finished jobs kept); jobs/s;
* ``drain_io``: 5,000 works each awaiting 20 ms, 200 at once (trio_delta
  ``max_workers``, pgqueuer ``max_concurrent_tasks``, procrastinate
  ``concurrency``): jobs/s against the ideal 10,000/s;
* ``drain_io_loop``: the same waits on each system's event loop alone, no
  database and no library (``event_loop_ceiling.py``: Trio for trio_delta,
  uvloop for pgqueuer, asyncio for procrastinate), run in the same rounds:
  the most ``drain_io`` can reach on this machine; jobs/s;
* ``drain_equal_durability``: the drain with the peers' connections at
  ``synchronous_commit = off`` too, as trio_delta's claim and outcome
  connections are (``Config.async_commit``); jobs/s;
* ``inform_many``: the same 100,000 objects through one ``client.inform_many``
  call (one transaction, pipelined statements) beside the peers' bulk
  enqueue (as in ``inform``); objects/s;
* ``inform_bulk_20k`` / ``inform_many_20k``: ``inform`` / ``inform_many`` at
  20,000 objects (the same size in ``--quick``); objects/s;
* ``latency``: an idle worker, one inform/enqueue every 20 ms: delay from
  inform/enqueue returning to the handler starting; p50, p95, p99 in ms;
* ``scale`` (trio_delta only): drain 10,000 with 1,000,000 other (synced) rows
  resident in the table, and with 10,000: ratio of the two drain rates;
* ``memory`` (trio_delta only): peak RSS growth of the client process over a
  1,000,000-object inform, MB.

See benchmarks/README.md for the peers' settings and the machine.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shlex
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

HERE = Path(__file__).resolve().parent
SYSTEMS = ("trio_delta", "pgqueuer", "procrastinate")
PEERS = ("pgqueuer", "procrastinate")
#: drain_io: every work awaits this long, this many at once (ideal: their ratio).
IO_WORK_S = 0.02
IO_CONCURRENCY = 200
IO_IDEAL = IO_CONCURRENCY / IO_WORK_S
IO_SETTINGS: dict[str, dict[str, Any]] = {
    # As many rows claimed ahead as workers (NamespaceConfig.prefetch): a
    # work that ends finds its next row waiting, the queue refilled at half.
    "trio_delta": {"max_workers": IO_CONCURRENCY, "prefetch": IO_CONCURRENCY},
    # pgqueuer wants at least twice its batch in flight: batches of 100.
    "pgqueuer": {"max_concurrent_tasks": IO_CONCURRENCY, "batch_size": IO_CONCURRENCY // 2},
    "procrastinate": {"concurrency": IO_CONCURRENCY},
}
#: Rows whose figures are not comparable across systems (each its own loop).
NO_RATIO = frozenset({"drain_io_loop"})
#: drain_io_loop: the event loop each system's child runs on.
EVENT_LOOP = {"trio_delta": "trio", "pgqueuer": "uvloop", "procrastinate": "asyncio"}
#: drain_defaults: what each library does out of the box (the harness's
#: other settings are tuned for no-op work).
DEFAULT_SETTINGS: dict[str, dict[str, Any]] = {
    # NamespaceConfig() and Config() defaults.
    "trio_delta": {"max_workers": 50, "batch_size": 200},
    # PgQueuer.run(): batch_size 10, no concurrency limit.
    "pgqueuer": {"batch_size": 10, "max_concurrent_tasks": None},
    # run_worker_async(): concurrency 1, finished jobs kept (delete_jobs
    # "never"); PsycopgConnector(): psycopg_pool's 4 connections.
    "procrastinate": {"concurrency": 1, "delete_jobs": "never", "pool_size": 4},
}
#: inform_bulk_20k, inform_many_20k: objects written, at any size.
BULK_SMALL = 20_000
#: inform_concurrent: this many tasks each inform one object at a time.
CONCURRENT_TASKS = 100
#: What a caller waits for, from the latency scenario's samples.
CALL_METRICS = (
    ("inform_call_p50", "inform call p50"),
    ("inform_call_p99", "inform call p99"),
    ("call_to_start_p50", "call start -> work start p50"),
    ("call_to_start_p99", "call start -> work start p99"),
)
#: The scenarios every system runs; the rest (scale, memory) are trio_delta's own.
WITH_PEERS = (
    "drain",
    "drain_defaults",
    "drain_equal_durability",
    "drain_io",
    "inform",
    "inform_many",
    "inform_bulk_20k",
    "inform_many_20k",
    "inform_concurrent",
    "latency",
)
SCENARIOS = (*WITH_PEERS, "scale", "memory")
CHILD = {s: HERE / f"bench_{s}.py" for s in SYSTEMS}
SHORT = {"trio_delta": "td", "pgqueuer": "pgq", "procrastinate": "proc"}
DEFAULT_DSN = os.environ.get("BENCH_DSN", "postgresql://postgres@127.0.0.1:5432/bench")


@dataclass(frozen=True)
class Sizes:
    drain: int
    drain_procrastinate: int
    drain_io: int
    inform: int
    inform_concurrent: int
    latency_samples: int
    scale_count: int
    scale_big: int
    scale_small: int
    memory: int


FULL = Sizes(
    drain=20_000,
    drain_procrastinate=20_000,
    drain_io=5_000,
    inform=100_000,
    inform_concurrent=20_000,
    latency_samples=500,
    scale_count=10_000,
    scale_big=1_000_000,
    scale_small=10_000,
    memory=1_000_000,
)
# --quick: under 3 minutes on 2 cores. procrastinate commits once per job, so
# it drains fewer jobs (its rate is still jobs/s, labelled with its n).
QUICK = Sizes(
    drain=5_000,
    drain_procrastinate=500,
    drain_io=2_000,
    inform_concurrent=5_000,
    inform=10_000,
    latency_samples=100,
    scale_count=2_000,
    scale_big=200_000,
    scale_small=2_000,
    memory=50_000,
)


@dataclass(frozen=True)
class Metric:
    """One row of the table / one key of the JSON."""

    key: str
    label: str
    unit: str
    higher_is_better: bool
    systems: tuple[str, ...]


@dataclass
class Cell:
    values: list[float] = field(default_factory=list[float])
    errors: list[str] = field(default_factory=list[str])
    size: str = ""

    def summary(self) -> tuple[float, float, float] | None:
        if not self.values:
            return None
        return statistics.median(self.values), min(self.values), max(self.values)


# -- small helpers ------------------------------------------------------------


def fmt(value: float) -> str:
    if math.isnan(value):
        return "nan"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def with_dbname(dsn: str, dbname: str) -> str:
    return make_conninfo(dsn, dbname=dbname)


def ensure_database(dsn: str) -> None:
    """Create the benchmark database if it does not exist yet."""
    try:
        with psycopg.connect(dsn, connect_timeout=10):
            return
    except psycopg.OperationalError as exc:
        if "does not exist" not in str(exc):
            raise
    dbname = conninfo_to_dict(dsn).get("dbname")
    if not dbname:
        raise SystemExit(f"cannot create the database of {dsn!r}: no dbname")
    with psycopg.connect(with_dbname(dsn, "postgres"), autocommit=True) as conn:
        conn.execute(sql.SQL("create database {}").format(sql.Identifier(str(dbname))))
    log(f"created database {dbname}")


def db_facts(dsn: str) -> dict[str, str]:
    with psycopg.connect(dsn) as conn:
        facts: dict[str, str] = {}
        for name in (
            "server_version",
            "synchronous_commit",
            "fsync",
            "shared_buffers",
            "max_connections",
        ):
            row = conn.execute(sql.SQL("show {}").format(sql.Identifier(name))).fetchone()
            facts[name] = str(row[0]) if row else "?"
    return facts


def loop_ceiling(loop: str, count: int) -> dict[str, Any]:
    """``event_loop_ceiling.py`` on ``loop``: the I/O-bound drain's waits
    with no database and no library, in a fresh process."""
    command = [sys.executable, str(HERE / "event_loop_ceiling.py"), loop, "--count", str(count)]
    command += ["--concurrency", str(IO_CONCURRENCY), "--seconds", str(IO_WORK_S)]
    try:
        proc = subprocess.run(command, capture_output=True, text=True, timeout=120, cwd=HERE)
    except subprocess.TimeoutExpired as exc:
        raise RuntimeError("timed out after 120s") from exc
    return child_result(proc)


def child_result(proc: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    """A child's last ``RESULT`` line, or RuntimeError with its last
    error line when it failed or printed none."""
    result = None
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            result = json.loads(line[len("RESULT ") :])
    if proc.returncode != 0 or result is None:
        tail = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise RuntimeError(f"exit {proc.returncode}: {tail}")
    out: dict[str, Any] = result
    return out


def drop_schema(dsn: str, schema: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("drop schema if exists {} cascade").format(sql.Identifier(schema)))


def machine() -> dict[str, str]:
    def run(cmd: str) -> str:
        try:
            return subprocess.run(
                shlex.split(cmd), capture_output=True, text=True, timeout=10
            ).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return "?"

    mem = run("free -h").splitlines()
    return {
        "nproc": run("nproc"),
        "memory": " ".join(mem[1].split()[1:2]) if len(mem) > 1 else "?",
        "cpu": next(
            (
                line.split(":", 1)[1].strip()
                for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")
            ),
            "?",
        )
        if Path("/proc/cpuinfo").exists()
        else platform.processor(),
        "python": platform.python_version(),
        "os": platform.platform(),
    }


def versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out: dict[str, str] = {}
    for dist in ("trio-delta", "trio", "psycopg", "pgqueuer", "asyncpg", "uvloop", "procrastinate"):
        try:
            out[dist] = version(dist)
        except PackageNotFoundError:
            out[dist] = "missing"
    return out


def git_revision() -> str:
    try:
        rev = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=HERE,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "src"],
            cwd=HERE,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
        return rev + (" (src/ has uncommitted changes)" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "?"


def loadavg() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "?"


# -- running one child --------------------------------------------------------


@dataclass
class Runner:
    dsn: str
    timeout: float
    settings: dict[str, str]
    verbose: bool

    def run(
        self,
        system: str,
        scenario: str,
        *,
        count: int = 0,
        resident: int = 0,
        samples: int = 0,
        extra: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Run one scenario of one system in a fresh process on a fresh
        schema; ``extra`` settings go over the system's ``--*-settings``."""
        settings = json.loads(self.settings.get(system, "{}"))
        settings.update(extra or {})
        schema = f"bench_{SHORT[system]}_{uuid.uuid4().hex[:10]}"
        cmd = [
            sys.executable,
            str(CHILD[system]),
            scenario,
            "--dsn",
            self.dsn,
            "--schema",
            schema,
            "--count",
            str(count),
            "--resident",
            str(resident),
            "--samples",
            str(samples),
            "--settings",
            json.dumps(settings),
        ]
        drop_schema(self.dsn, schema)
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            conn.execute(sql.SQL("create schema {}").format(sql.Identifier(schema)))
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        try:
            proc = subprocess.run(
                cmd, capture_output=True, text=True, timeout=self.timeout, env=env, cwd=HERE
            )
        except subprocess.TimeoutExpired as exc:
            raise RuntimeError(f"timed out after {self.timeout:.0f}s") from exc
        finally:
            drop_schema(self.dsn, schema)
        if self.verbose and proc.stderr.strip():
            log(proc.stderr.rstrip())
        return child_result(proc)


# -- the benchmark ------------------------------------------------------------


@dataclass
class Bench:
    runner: Runner
    sizes: Sizes
    rounds: int
    systems: tuple[str, ...]
    cells: dict[tuple[str, str], Cell] = field(default_factory=dict[tuple[str, str], Cell])
    metrics: list[Metric] = field(default_factory=list[Metric])

    def cell(self, key: str, system: str) -> Cell:
        return self.cells.setdefault((key, system), Cell())

    def add_metric(self, metric: Metric) -> None:
        if all(m.key != metric.key for m in self.metrics):
            self.metrics.append(metric)

    def record(
        self,
        system: str,
        result: dict[str, Any] | None,
        error: str | None,
        keys: Sequence[str],
        size: str,
    ) -> None:
        for key in keys:
            cell = self.cell(key, system)
            cell.size = size
            if error is not None:
                cell.errors.append(error)
            elif result is not None and key in result:
                cell.values.append(float(result[key]))

    def attempt(
        self, label: str, fn: Callable[[], dict[str, Any]]
    ) -> tuple[dict[str, Any] | None, str | None]:
        started = time.perf_counter()
        try:
            result = fn()
        except RuntimeError as exc:
            log(f"  {label}: FAILED ({exc})")
            return None, str(exc)
        shown = {k: (round(v, 3) if isinstance(v, float) else v) for k, v in result.items()}
        log(f"  {label}: {shown} [{time.perf_counter() - started:.1f}s wall]")
        return result, None

    def scenario(self, name: str) -> None:
        systems = (
            self.systems
            if name in WITH_PEERS
            else (("trio_delta",) if "trio_delta" in self.systems else ())
        )
        if not systems:
            log(f"{name}: skipped (trio_delta only)")
            return
        if name == "drain":
            self.add_metric(Metric("drain", "drain", "jobs/s", True, systems))
        elif name == "drain_defaults":
            label = "drain, every system at its library defaults"
            self.add_metric(Metric(name, label, "jobs/s", True, systems))
        elif name == "drain_equal_durability":
            label = "drain, peers at synchronous_commit=off too"
            self.add_metric(Metric(name, label, "jobs/s", True, systems))
        elif name == "drain_io":
            label = f"drain, works awaiting {IO_WORK_S * 1000:g} ms, {IO_CONCURRENCY} at once"
            self.add_metric(Metric(name, label, "jobs/s", True, systems))
            label = "  the same waits on the event loop alone"
            self.add_metric(Metric("drain_io_loop", label, "jobs/s", True, systems))
        elif name == "inform":
            self.add_metric(Metric("inform", "inform", "objects/s", True, systems))
        elif name == "inform_many":
            self.add_metric(Metric("inform_many", "inform_many", "objects/s", True, systems))
        elif name in ("inform_bulk_20k", "inform_many_20k"):
            label = "inform" if name == "inform_bulk_20k" else "inform_many"
            self.add_metric(Metric(name, label, "objects/s", True, systems))
        elif name == "inform_concurrent":
            label = f"single informs from {CONCURRENT_TASKS} tasks"
            self.add_metric(Metric(name, label, "objects/s", True, systems))
        elif name == "latency":
            for p in ("p50", "p95", "p99"):
                self.add_metric(Metric(f"latency_{p}", f"latency {p}", "ms", False, systems))
            for key, label in CALL_METRICS:
                self.add_metric(Metric(key, label, "ms", False, systems))
        elif name == "scale":
            self.add_metric(Metric("scale", "scale", "ratio", True, systems))
            self.add_metric(
                Metric("scale_drain_big", "scale: drain, big table", "jobs/s", True, systems)
            )
            self.add_metric(
                Metric("scale_drain_small", "scale: drain, small table", "jobs/s", True, systems)
            )
        else:
            self.add_metric(Metric("memory", "memory (RSS growth)", "MB", False, systems))
        for r in range(1, self.rounds + 1):
            log(f"[{name} round {r}/{self.rounds}] load {loadavg()}")
            for system in systems:
                self.one(name, system)

    def _drain_variant(self, name: str, system: str) -> tuple[int, dict[str, Any], str]:
        """The drain scenario ``name`` for ``system``: how many jobs, which
        settings over the system's own, and the size shown."""
        s = self.sizes
        if name == "drain_io":
            extra = {"work_seconds": IO_WORK_S, **IO_SETTINGS[system]}
            return s.drain_io, extra, f"n={s.drain_io:,}, ideal {IO_IDEAL:,.0f}/s"
        n = s.drain_procrastinate if system == "procrastinate" else s.drain
        if name == "drain_defaults":
            return n, DEFAULT_SETTINGS[system], f"n={n:,}"
        # trio_delta's claims and outcomes commit without waiting for the WAL
        # flush (Config.async_commit); at equal durability the peers' do too.
        peers_async = name == "drain_equal_durability" and system != "trio_delta"
        return n, {"synchronous_commit": "off"} if peers_async else {}, f"n={n:,}"

    def one(self, name: str, system: str) -> None:
        s, run = self.sizes, self.runner.run
        if name in ("drain", "drain_defaults", "drain_equal_durability", "drain_io"):
            n, extra, size = self._drain_variant(name, system)
            res, err = self.attempt(system, lambda: run(system, "drain", count=n, extra=extra))
            if res is not None:
                res = {**res, name: res["drain"]}
            self.record(system, res, err, [name], size)
            if name == "drain_io":
                loop = EVENT_LOOP[system]
                res, err = self.attempt(f"{system} ({loop} alone)", lambda: loop_ceiling(loop, n))
                if res is not None:
                    res = {**res, "drain_io_loop": res["drain"]}
                self.record(system, res, err, ["drain_io_loop"], f"{loop}, n={n:,}")
        elif name in ("inform", "inform_bulk_20k"):
            n = s.inform if name == "inform" else BULK_SMALL
            res, err = self.attempt(system, lambda: run(system, "inform", count=n))
            if res is not None:
                res = {**res, name: res["inform"]}
            self.record(system, res, err, [name], f"n={n:,}")
        elif name == "inform_concurrent":
            n = s.inform_concurrent
            res, err = self.attempt(
                system, lambda: run(system, name, count=n, samples=CONCURRENT_TASKS)
            )
            self.record(system, res, err, [name], f"n={n:,}")
        elif name in ("inform_many", "inform_many_20k"):
            # The peers' side is their bulk enqueue, as in ``inform``.
            n = s.inform if name == "inform_many" else BULK_SMALL
            child = "inform_many" if system == "trio_delta" else "inform"
            res, err = self.attempt(system, lambda: run(system, child, count=n))
            if res is not None:
                res = {**res, name: res[child]}
            self.record(system, res, err, [name], f"n={n:,}")
        elif name == "latency":
            res, err = self.attempt(
                system, lambda: run(system, "latency", samples=s.latency_samples)
            )
            self.record(
                system,
                res,
                err,
                ["latency_p50", "latency_p95", "latency_p99", *(k for k, _ in CALL_METRICS)],
                f"{s.latency_samples} samples",
            )
        elif name == "scale":
            small, e1 = self.attempt(
                f"{system} (resident {s.scale_small:,})",
                lambda: run(system, "scale", count=s.scale_count, resident=s.scale_small),
            )
            big, e2 = self.attempt(
                f"{system} (resident {s.scale_big:,})",
                lambda: run(system, "scale", count=s.scale_count, resident=s.scale_big),
            )
            size = f"n={s.scale_count:,}"
            self.record(
                system,
                small and {"scale_drain_small": small["drain"]},
                e1,
                ["scale_drain_small"],
                f"{size}, {s.scale_small:,} resident",
            )
            self.record(
                system,
                big and {"scale_drain_big": big["drain"]},
                e2,
                ["scale_drain_big"],
                f"{size}, {s.scale_big:,} resident",
            )
            ratio = (
                None if small is None or big is None else {"scale": big["drain"] / small["drain"]}
            )
            self.record(
                system, ratio, e1 or e2, ["scale"], f"{s.scale_big:,} vs {s.scale_small:,} resident"
            )
        else:
            res, err = self.attempt(system, lambda: run(system, "memory", count=s.memory))
            self.record(system, res, err, ["memory"], f"{s.memory:,} objects")

    # -- output ---------------------------------------------------------------

    def best_peer(self, metric: Metric) -> tuple[str, float] | None:
        if metric.key in NO_RATIO:
            return None
        peers: list[tuple[str, float]] = []
        for system in metric.systems:
            summary = self.cell(metric.key, system).summary()
            if system != "trio_delta" and summary is not None:
                peers.append((system, summary[0]))
        if not peers:
            return None
        pick = max if metric.higher_is_better else min
        return pick(peers, key=lambda p: p[1])

    def target(self, metric: Metric) -> str:
        td = self.cell(metric.key, "trio_delta").summary()
        if td is None:
            return ""
        best = self.best_peer(metric)
        ratio = td[0] / best[1] if best and best[1] else None

        def faster(most: float) -> bool:
            return td[0] <= most and (best is None or td[0] * 1.5 <= best[1])

        checks: dict[str, tuple[str, bool | None]] = {
            "drain": (">=1.5x", None if ratio is None else ratio >= 1.5),
            "drain_equal_durability": (">=1.5x", None if ratio is None else ratio >= 1.5),
            "drain_defaults": (">=1.5x", None if ratio is None else ratio >= 1.5),
            "drain_io": (">=85% of ideal", td[0] >= 0.85 * IO_IDEAL),
            "inform": (">=1.2x", None if ratio is None else ratio >= 1.2),
            "inform_bulk_20k": (">=1.2x", None if ratio is None else ratio >= 1.2),
            "inform_many": (">=1.2x", None if ratio is None else ratio >= 1.2),
            "inform_many_20k": (">=1.2x", None if ratio is None else ratio >= 1.2),
            "inform_concurrent": (">=3x", None if ratio is None else ratio >= 3.0),
            "latency_p50": ("<=2ms, <=peers", td[0] <= 2.0 and (best is None or td[0] <= best[1])),
            "latency_p99": ("<=5ms, <=peers", td[0] <= 5.0 and (best is None or td[0] <= best[1])),
            # Issue 15: at most these, and at least 1.5x better than the best peer.
            "inform_call_p50": ("<=1.0ms, 1.5x peers", faster(1.0)),
            "inform_call_p99": ("<=2.5ms, 1.5x peers", faster(2.5)),
            "call_to_start_p50": ("<=2.0ms, 1.5x peers", faster(2.0)),
            "call_to_start_p99": ("<=5ms, 1.5x peers", faster(5.0)),
            "scale": (">=0.8", td[0] >= 0.8),
            "memory": ("<=150MB", td[0] <= 150.0),
        }
        if metric.key not in checks:
            return ""
        text, ok = checks[metric.key]
        return f"{text}: {'-' if ok is None else ('met' if ok else 'NOT met')}"

    def table(self) -> str:
        headers = ["scenario", "unit", *self.systems, "td/best peer", "target"]
        rows: list[list[str]] = []
        for metric in self.metrics:
            sizes = {self.cell(metric.key, s).size for s in metric.systems} - {""}
            label = metric.label + (f" ({'; '.join(sorted(sizes))})" if len(sizes) == 1 else "")
            row = [label, metric.unit + (" ^" if metric.higher_is_better else " v")]
            for system in self.systems:
                if system not in metric.systems:
                    row.append("-")
                    continue
                cell = self.cell(metric.key, system)
                summary = cell.summary()
                text = "error" if summary is None and cell.errors else "-"
                if summary is not None:
                    med, lo, hi = summary
                    text = f"{fmt(med)} [{fmt(lo)}-{fmt(hi)}]"
                    if len(sizes) > 1:
                        text += f" {cell.size}"
                    if cell.errors:
                        text += f" ({len(cell.errors)} failed)"
                row.append(text)
            td = self.cell(metric.key, "trio_delta").summary()
            best = self.best_peer(metric)
            row.append(f"{td[0] / best[1]:.2f} ({best[0]})" if td and best and best[1] else "-")
            row.append(self.target(metric))
            rows.append(row)
        widths = [max(len(r[i]) for r in [headers, *rows]) for i in range(len(headers))]
        lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))]
        lines.append("  ".join("-" * w for w in widths))
        lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
        lines.append("")
        lines.append(
            "cells: median [min-max] over rounds; ^ higher is better, v lower is "
            "better; td/best peer = trio_delta median / best peer median"
        )
        failures = [(k, s, e) for (k, s), c in self.cells.items() for e in c.errors]
        for key, system, error in failures:
            lines.append(f"failed: {key} {system}: {error}")
        return "\n".join(lines)

    def as_json(self) -> dict[str, dict[str, dict[str, Any]]]:
        out: dict[str, dict[str, dict[str, Any]]] = {}
        for metric in self.metrics:
            for system in metric.systems:
                cell = self.cell(metric.key, system)
                summary = cell.summary()
                if summary is None:
                    continue
                out.setdefault(metric.key, {})[system] = {
                    "median": summary[0],
                    "min": summary[1],
                    "max": summary[2],
                    "unit": metric.unit,
                    "size": cell.size,
                    "values": cell.values,
                    "higher_is_better": metric.higher_is_better,
                }
        return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--dsn", default=DEFAULT_DSN, help="database to run in (created if missing; env BENCH_DSN)"
    )
    parser.add_argument("--quick", action="store_true", help="small sizes: under 3 minutes")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (>= 1)")
    parser.add_argument("--scenarios", nargs="+", choices=SCENARIOS, default=list(SCENARIOS))
    parser.add_argument("--systems", nargs="+", choices=SYSTEMS, default=list(SYSTEMS))
    parser.add_argument("--json", type=Path, help="write the figures as JSON here")
    parser.add_argument("--text", type=Path, help="write the header and table here")
    parser.add_argument(
        "--timeout",
        type=float,
        default=None,
        help="seconds one run may take (default 300 quick, 1800 full)",
    )
    for system in SYSTEMS:
        parser.add_argument(
            f"--{SHORT[system]}-settings",
            default="{}",
            metavar="JSON",
            help=f"override {system}'s settings (see bench_{system}.py)",
        )
    parser.add_argument("-v", "--verbose", action="store_true", help="show children's stderr")
    args = parser.parse_args(argv)
    if args.rounds < 1:
        parser.error("--rounds must be >= 1")

    sizes = QUICK if args.quick else FULL
    systems = tuple(s for s in SYSTEMS if s in args.systems)
    ensure_database(args.dsn)
    settings = {s: getattr(args, f"{SHORT[s]}_settings") for s in SYSTEMS}
    runner = Runner(
        args.dsn, args.timeout or (300.0 if args.quick else 1800.0), settings, args.verbose
    )
    bench = Bench(runner, sizes, args.rounds, systems)

    started = datetime.now(UTC)
    load_before = loadavg()
    revision = git_revision()  # before: others may commit while this runs
    t0 = time.perf_counter()
    for name in SCENARIOS:
        if name in args.scenarios:
            bench.scenario(name)
    elapsed = time.perf_counter() - t0

    m, db, ver = machine(), db_facts(args.dsn), versions()
    header = [
        f"trio_delta benchmarks: {'QUICK (reduced sizes)' if args.quick else 'full'} run, "
        f"{args.rounds} rounds interleaved, {started:%Y-%m-%d %H:%M} UTC, "
        f"took {elapsed:.0f}s",
        f"git {revision} (at start)",
        f"machine: {m['nproc']} cpus ({m['cpu']}), {m['memory']} RAM, {m['os']}, "
        f"Python {m['python']}; load average before {load_before}, after {loadavg()}",
        f"postgres {db['server_version']} (synchronous_commit={db['synchronous_commit']}, "
        f"fsync={db['fsync']}, shared_buffers={db['shared_buffers']})",
        "versions: " + ", ".join(f"{k} {v}" for k, v in ver.items()),
        "settings: " + "; ".join(f"{s} {settings[s]}" for s in systems if settings[s] != "{}")
        if any(settings[s] != "{}" for s in systems)
        else "settings: defaults of bench_*.py",
    ]
    if args.quick:
        header.append(
            f"quick sizes: drain {sizes.drain:,} (procrastinate {sizes.drain_procrastinate:,}),"
            f" inform {sizes.inform:,}, latency {sizes.latency_samples} samples, scale "
            f"{sizes.scale_count:,} with {sizes.scale_big:,} vs {sizes.scale_small:,} resident,"
            f" memory over a {sizes.memory:,}-object inform (the issue's targets are set for"
            " the full sizes)"
        )
    text = "\n".join(header) + "\n\n" + bench.table() + "\n"
    print(text)
    if args.text:
        args.text.parent.mkdir(parents=True, exist_ok=True)
        args.text.write_text(text)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(bench.as_json(), indent=2) + "\n")
    return 1 if any(c.errors for c in bench.cells.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
