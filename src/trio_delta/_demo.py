"""``trio-delta demo``: the seed's story, self-contained.

A fake outside system, a directory of a few thousand users, keeps changing.
A controller's informer pulls every user from it; trio_delta stores each as
a resource, and only the new or changed ones are worked: the worker copies
the user into a local ``demo_user`` table. A live view follows the
resources' states; at the end the local table matches the directory.

The demo owns the schema :data:`DEMO_SCHEMA` and recreates it on each run.
"""

from __future__ import annotations

import random
import time
from collections.abc import Generator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, ClassVar

import psycopg
import trio
from psycopg import sql
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn
from rich.table import Table

from ._admin import STATES
from ._client import Client
from ._config import Config, NamespaceConfig
from ._controllers import Controller, Controllers, add_controller
from ._errors import StoreError
from ._migrate import migrate
from ._running import open_delta_client
from ._store.dsn import describe_dsn, normalize_dsn, redact, with_connect_timeout
from ._types import InformOptions, Resource

#: The schema the demo creates (and drops first): nothing else lives there.
DEMO_SCHEMA = "delta_demo"
KIND = "demo-user"
_SCHEMA = sql.Identifier(DEMO_SCHEMA).as_string(None)
TABLE = f"{_SCHEMA}.demo_user"


@dataclass
class DemoUser:
    kind: ClassVar[str] = KIND
    email: str
    name: str
    version: int

    def id(self) -> str:
        return self.email

    def compare(self, other: DemoUser) -> int:
        return self.version - other.version


class FakeDirectory:
    """The "outside system": users that change over time."""

    def __init__(self, size: int, seed: int = 7) -> None:
        self._rng = random.Random(seed)
        self.users = {
            f"user{i}@example.com": DemoUser(f"user{i}@example.com", f"User {i}", 1)
            for i in range(size)
        }
        self.changes = 0

    def churn(self, count: int) -> list[DemoUser]:
        """Change ``count`` random users (a new name, the next version)."""
        changed: list[DemoUser] = []
        for email in self._rng.sample(sorted(self.users), min(count, len(self.users))):
            old = self.users[email]
            new = DemoUser(email, f"{old.name.split(' v')[0]} v{old.version + 1}", old.version + 1)
            self.users[email] = new
            changed.append(new)
        self.changes += len(changed)
        return changed


class DemoUserController(Controller[DemoUser]):
    """Informs every user of the directory; works one by copying it locally."""

    def __init__(self, directory: FakeDirectory, client_ref: list[Client]) -> None:
        self.directory = directory
        self.client_ref = client_ref

    async def inform(self, opts: InformOptions, send: trio.MemorySendChannel[DemoUser]) -> None:
        async with send:
            for user in list(self.directory.users.values()):
                await send.send(user)

    async def work(self, resource: Resource[DemoUser]) -> None:
        user = resource.object
        async with self.client_ref[0].transaction() as tx:
            await tx.execute(
                f"insert into {TABLE} (email, name, version) values (%s, %s, %s) "
                "on conflict (email) do update set name = excluded.name, "
                f"version = excluded.version where {TABLE}.version < excluded.version",
                [user.email, user.name, user.version],
            )


def _prepare_database(dsn: str) -> None:
    """Drop what an earlier demo left in :data:`DEMO_SCHEMA`."""
    conninfo = with_connect_timeout(normalize_dsn(dsn))
    try:
        with psycopg.connect(conninfo, autocommit=True) as conn:
            conn.execute(
                sql.SQL("drop schema if exists {} cascade").format(sql.Identifier(DEMO_SCHEMA))
            )
    except (psycopg.Error, OSError) as exc:
        raise StoreError(
            f"cannot prepare the demo on {describe_dsn(conninfo)}: {redact(str(exc)).strip()}"
        ) from None


def _create_table(dsn: str) -> None:
    with psycopg.connect(with_connect_timeout(normalize_dsn(dsn)), autocommit=True) as conn:
        conn.execute(
            sql.SQL(
                "create table if not exists {}.demo_user ("
                "email text primary key, name text not null, version int not null)"
            ).format(sql.Identifier(DEMO_SCHEMA))
        )


@dataclass
class Snapshot:
    states: dict[str, int] = field(default_factory=dict[str, int])
    local: dict[str, int] = field(default_factory=dict[str, int])

    @property
    def total(self) -> int:
        return sum(self.states.values())


class DemoView:
    """The live view: two progress bars, the states, the story so far."""

    def __init__(self, directory: FakeDirectory, rounds: int) -> None:
        self.directory = directory
        self.rounds = rounds
        self.round = 0
        self.started = time.monotonic()
        self.snapshot = Snapshot()
        self.informer_runs = 0
        self.worked = 0
        self.progress = Progress(
            TextColumn("{task.description:<28}"),
            BarColumn(bar_width=40),
            MofNCompleteColumn(),
            auto_refresh=False,
        )
        self._match: TaskID = self.progress.add_task(
            "local copy matches upstream", total=len(directory.users)
        )
        self._synced: TaskID = self.progress.add_task("resources synced", total=1)

    def matched(self) -> int:
        local = self.snapshot.local
        return sum(1 for e, u in self.directory.users.items() if local.get(e) == u.version)

    def update(self, snapshot: Snapshot, *, informer_runs: int, worked: int) -> None:
        self.snapshot = snapshot
        self.informer_runs = informer_runs
        self.worked = worked
        self.progress.update(self._match, completed=self.matched(), total=len(self.directory.users))
        self.progress.update(
            self._synced, completed=snapshot.states.get("synced", 0), total=max(snapshot.total, 1)
        )

    def render(self) -> RenderableType:
        states = Table(box=None, pad_edge=False)
        for state in STATES:
            states.add_column(state, justify="right")
        states.add_row(*(str(self.snapshot.states.get(s, 0)) for s in STATES))
        story = (
            f"{len(self.directory.users)} users upstream · {self.directory.changes} "
            f"changes · round {self.round}/{self.rounds} · {self.informer_runs} "
            f"informer runs · {self.worked} copies · "
            f"{time.monotonic() - self.started:.1f}s"
        )
        return Group(self.progress, states, story)


@contextmanager
def _newline_after(console: Console) -> Generator[None]:
    """End the live view's last line, however the block ends."""
    try:
        yield
    finally:
        console.line()


async def _snapshot(client: Client) -> Snapshot:
    async with client.transaction() as tx:
        states = await tx.execute(
            f"select state, count(*) from {_SCHEMA}.resources where kind = %s group by state",
            [KIND],
        )
        local = await tx.execute(f"select email, version from {TABLE}")
    return Snapshot({str(s): int(n) for s, n in states}, {str(e): int(v) for e, v in local})


async def run_demo(
    dsn: str,
    *,
    users: int = 2000,
    rounds: int = 3,
    round_interval: float = 1.0,
    converge_within: float = 50.0,
    console: Console | None = None,
) -> int:
    """Run the demo on ``dsn``; returns the exit code (0: converged)."""
    console = console if console is not None else Console(highlight=False, log_path=False)
    started = time.monotonic()
    await trio.to_thread.run_sync(_prepare_database, dsn)
    await migrate(dsn, schema=DEMO_SCHEMA)
    await trio.to_thread.run_sync(_create_table, dsn)

    directory = FakeDirectory(users)
    client_ref: list[Client] = []
    controllers = Controllers()
    add_controller(controllers, DemoUserController(directory, client_ref))
    config = Config(
        schema=DEMO_SCHEMA, poll_interval=0.5, inform_jitter=0.0, shutdown_grace=5.0, pool_size=16
    )
    view = DemoView(directory, rounds)
    converged = False
    async with open_delta_client(
        dsn,
        controllers,
        namespaces={"default": NamespaceConfig(max_workers=20)},
        config=config,
    ) as client:
        client_ref.append(client)
        with (
            Live(
                view.render(), console=console, refresh_per_second=8, redirect_stdout=False
            ) as live,
            _newline_after(console),
        ):

            async def refresh() -> Snapshot:
                snapshot = await _snapshot(client)
                stats = client.stats
                view.update(snapshot, informer_runs=stats.informer_runs, worked=stats.worked)
                live.update(view.render())
                return snapshot

            async def watch() -> None:
                while True:
                    await refresh()
                    await trio.sleep(0.5)

            with trio.move_on_after(converge_within):
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(watch)
                    console.log(f"informer pulling {users} users from the fake directory")
                    # The informer's state lives in the database: poll it.
                    state = await client.get_informer(KIND)
                    while state is None or state.last_run_at is None:
                        await trio.sleep(0.1)
                        state = await client.get_informer(KIND)
                    for round_no in range(1, rounds + 1):
                        await trio.sleep(round_interval)
                        changed = directory.churn(max(1, users // 10))
                        view.round = round_no
                        await client.schedule_inform(KIND)
                        console.log(
                            f"round {round_no}: {len(changed)} users changed "
                            "upstream; informer run requested"
                        )
                    while True:
                        snapshot = await refresh()
                        state = await client.get_informer(KIND)
                        idle = (
                            state is not None
                            and state.requested_at is None
                            and state.lease_owner is None
                        )
                        if (
                            idle
                            and view.matched() == users
                            and snapshot.states.get("synced", 0) == snapshot.total
                        ):
                            converged = True
                            break
                        await trio.sleep(0.1)
                    nursery.cancel_scope.cancel()
            await refresh()
        stats = client.stats
    elapsed = time.monotonic() - started
    matched = view.matched()
    console.print(
        _final_table(view, stats.worked, stats.informer_runs, matched, elapsed, converged)
    )
    if converged:
        console.print(_sample_table(view), markup=False)
        console.print(
            f"converged: the local table matches all {users} upstream users in {elapsed:.1f}s",
            style="bold green",
        )
        return 0
    console.print(
        f"NOT converged within {converge_within:.0f}s: {users - matched} users differ",
        style="bold red",
    )
    return 1


def _final_table(
    view: DemoView, worked: int, informer_runs: int, matched: int, elapsed: float, converged: bool
) -> Table:
    table = Table(
        title="trio-delta demo: " + ("converged" if converged else "NOT converged"),
        title_justify="left",
        show_header=False,
    )
    table.add_column(style="bold")
    table.add_column(justify="right")
    snapshot = view.snapshot
    users = len(view.directory.users)
    rows: list[tuple[str, Any]] = [
        ("users upstream", users),
        ("changes upstream", f"{view.directory.changes} in {view.round} rounds"),
        ("informer runs", informer_runs),
        ("resources", snapshot.total),
        ("resources synced", snapshot.states.get("synced", 0)),
        ("work done (copies made)", worked),
        ("rows in local table", len(snapshot.local)),
        ("matching upstream", matched),
        ("mismatched", users - matched),
        ("seconds", f"{elapsed:.1f}"),
    ]
    for name, value in rows:
        table.add_row(name, str(value))
    return table


def _sample_table(view: DemoView, count: int = 5) -> Table:
    table = Table(title="a few users that changed", title_justify="left")
    for column in ("email", "upstream name", "upstream version", "local version"):
        table.add_column(column, justify="right" if "version" in column else "left")
    changed = sorted(view.directory.users.values(), key=lambda u: (-u.version, u.email))
    for user in changed[:count]:
        table.add_row(
            user.email, user.name, str(user.version), str(view.snapshot.local.get(user.email, "-"))
        )
    return table
