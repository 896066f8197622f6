"""``trio-delta demo``: the seed's story, self-contained.

A fake outside system holds a few thousand users that keep changing. A
controller's informer pulls them, trio_delta stores each as a resource, and
the worker copies it into a local ``demo_user`` table. At the end the local
table matches the outside system.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, ClassVar

import trio

from ._client import Client, open_delta_client
from ._config import Config, NamespaceConfig
from ._controllers import Controller, Controllers, add_controller
from ._migrate import migrate
from ._types import InformOptions, Resource, ResourceState


@dataclass
class DemoUser:
    kind: ClassVar[str] = "demo-user"
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

    def churn(self, count: int) -> list[DemoUser]:
        changed: list[DemoUser] = []
        for email in self._rng.sample(sorted(self.users), count):
            old = self.users[email]
            new = DemoUser(email, f"{old.name.split(' v')[0]} v{old.version + 1}", old.version + 1)
            self.users[email] = new
            changed.append(new)
        return changed


class DemoUserController(Controller[DemoUser]):
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
                "insert into demo_user (email, name, version) values (%s, %s, %s) "
                "on conflict (email) do update set name = excluded.name, "
                "version = excluded.version where demo_user.version < excluded.version",
                [user.email, user.name, user.version],
            )


async def run_demo(dsn: str, *, users: int = 2000, rounds: int = 3, schema: str = "delta_demo",
                   out: Any = print) -> int:
    await migrate(dsn, schema=schema)
    directory = FakeDirectory(users)
    client_ref: list[Client] = []
    controllers = Controllers()
    add_controller(controllers, DemoUserController(directory, client_ref))
    config = Config(schema=schema, poll_interval=0.5, shutdown_grace=5)
    started = time.monotonic()
    async with open_delta_client(
        dsn, controllers, namespaces={"default": NamespaceConfig(max_workers=20)}, config=config
    ) as client:
        client_ref.append(client)
        async with client.transaction() as tx:
            await tx.execute("create table if not exists demo_user ("
                             "email text primary key, name text not null, version int not null)")
        out(f"informing {users} users from the fake directory...")
        for user in directory.users.values():
            await client.inform(user)
        for round_no in range(1, rounds + 1):
            changed = directory.churn(max(1, users // 10))
            for user in changed:
                await client.inform(user)
            out(f"round {round_no}: {len(changed)} users changed upstream and informed")
            await trio.sleep(0.2)
        with trio.fail_after(60):
            while True:
                counts = await _counts(client)
                synced = counts.get(ResourceState.SYNCED, 0)
                out(f"  synced {synced}/{users}  {_fmt_counts(counts)}")
                if synced >= users and counts.get(ResourceState.SYNCED) == sum(counts.values()):
                    break
                await trio.sleep(0.5)
        async with client.transaction() as tx:
            rows = await tx.execute("select email, version from demo_user")
    local: dict[str, int] = dict(rows)
    mismatched = [e for e, u in directory.users.items() if local.get(e) != u.version]
    elapsed = time.monotonic() - started
    out("")
    out(f"{'users upstream':<24}{users:>8}")
    out(f"{'rows in demo_user':<24}{len(local):>8}")
    out(f"{'mismatched':<24}{len(mismatched):>8}")
    out(f"{'seconds':<24}{elapsed:>8.1f}")
    out(f"converged at {datetime.now(UTC):%H:%M:%S}" if not mismatched else "NOT converged")
    return 0 if not mismatched else 1


async def _counts(client: Client) -> dict[ResourceState, int]:
    counts: dict[ResourceState, int] = {}
    after = None
    while True:
        page = await client.list_resources(kind="demo-user", limit=5000, after_id=after)
        if not page:
            return counts
        for row in page:
            counts[row.state] = counts.get(row.state, 0) + 1
        after = page[-1].id


def _fmt_counts(counts: dict[ResourceState, int]) -> str:
    return " ".join(f"{s.value}={n}" for s, n in sorted(counts.items()))
