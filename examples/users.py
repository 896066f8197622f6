"""The seed's User example, whole: a directory of users kept in sync with an app table.

An in-process "directory" (the outside system) holds users. The controller's
informer pulls them; its worker copies each into the app's own ``app_user``
table, idempotently. Along the way it shows the rest of the client's API:
``inform`` of one object, ``inform_tx`` in the app's own transaction,
``schedule_inform`` after upstream changes, ``invalidate``, ``subscribe``,
``get_resource`` and ``list_resources``.

Run: python examples/users.py [DSN]   (default: $TRIO_DELTA_DSN or local)
"""

from __future__ import annotations

import os
import sys
from collections import Counter
from dataclasses import dataclass
from typing import ClassVar

import psycopg
import trio
from psycopg import sql

import trio_delta as delta

DSN = (sys.argv[1] if len(sys.argv) > 1 else None) or os.environ.get(
    "TRIO_DELTA_DSN", "host=127.0.0.1 user=postgres dbname=test"
)


@dataclass
class User:
    kind: ClassVar[str] = "user"
    email: str
    name: str
    updated_at: int

    def id(self) -> str:
        return self.email

    def compare(self, other: User) -> int:  # >0 newer, 0 same, <0 older (ignored)
        return self.updated_at - other.updated_at


class Directory:
    """The outside system: users, each with a version that only goes up."""

    def __init__(self) -> None:
        self.users = {
            f"user{i}@hello.com": User(f"user{i}@hello.com", f"User {i}", 1) for i in range(20)
        }

    def rename(self, email: str, name: str) -> None:
        self.users[email] = User(email, name, self.users[email].updated_at + 1)

    async def fetch_users(self) -> list[User]:
        await trio.lowlevel.checkpoint()  # a request to the directory
        return list(self.users.values())


class UserController(delta.Controller[User]):
    def __init__(self, directory: Directory, table: str) -> None:
        self.directory = directory
        self.table = sql.SQL(table)
        self.client: delta.Client | None = None  # set once the client is open
        self.worked = 0

    async def inform(self, opts: delta.InformOptions, send: trio.MemorySendChannel[User]) -> None:
        async with send:  # the whole directory: unchanged users are not worked again
            for user in await self.directory.fetch_users():
                await send.send(user)

    async def work(self, resource: delta.Resource[User]) -> None:
        assert self.client is not None
        user = resource.object
        async with self.client.transaction() as tx:
            # Idempotent: worked twice, or an older version, changes nothing.
            await tx.execute(
                sql.SQL(
                    "insert into {} as u (email, name, version) values (%s, %s, %s)"
                    " on conflict (email) do update set name = excluded.name,"
                    " version = excluded.version where u.version < excluded.version"
                )
                .format(self.table)
                .as_string(),
                [user.email, user.name, user.updated_at],
            )
        self.worked += 1


async def wait_for_synced(events: delta.Subscription, count: int) -> None:
    """Wait for ``count`` OBJECT_SYNCED events of this client's workers."""
    with trio.fail_after(30):
        seen = 0
        while seen < count:
            await events.receive()
            seen += 1


async def run(schema: str) -> None:
    table = f"{schema}.app_user"
    directory = Directory()
    controller = UserController(directory, table)
    controllers = delta.Controllers()
    delta.add_controller(controllers, controller)

    await delta.migrate(DSN, schema=schema)  # idempotent: run it on every start
    config = delta.Config(schema=schema)
    namespaces = {"default": delta.NamespaceConfig(max_workers=10)}
    async with delta.open_delta_client(
        DSN, controllers, namespaces=namespaces, config=config
    ) as client:
        controller.client = client
        async with client.transaction() as tx:
            await tx.execute(
                f"create table {table} (email text primary key, name text, version int not null)"
            )

        with client.subscribe(delta.EventCategory.OBJECT_SYNCED) as events:
            # 1. The informer runs at once for a kind new to the schema.
            await wait_for_synced(events, 20)
            print(f"informer: {controller.worked} users synced into {table}")

            # 2. Inform one object directly: a newer version is worked...
            bob = User("bob@hello.com", "Bob", 1)
            result = await client.inform(bob)
            await wait_for_synced(events, 1)
            # ... an older one is ignored (compare < 0), an equal one is unchanged.
            stale = await client.inform(User("bob@hello.com", "Bobby", 0))
            print(
                f"inform: bob new={not result.already_exists}, "
                f"stale copy changed anything={stale.changed}"
            )

            # 3. Sign-up: the app's row and the resource commit together.
            async with client.transaction() as tx:
                await tx.execute(
                    f"insert into {table} values (%s, %s, 0)",
                    ["carol@hello.com", "Carol (signing up)"],
                )
                await client.inform_tx(tx, User("carol@hello.com", "Carol", 1))
            await wait_for_synced(events, 1)

            # 4. Upstream changes, picked up by an informer run on demand.
            directory.rename("user3@hello.com", "User Three")
            directory.rename("user7@hello.com", "User Seven")
            before = controller.worked
            await client.schedule_inform("user")
            await wait_for_synced(events, 2)
            print(
                f"schedule_inform: {controller.worked - before} changed users re-synced "
                "(18 unchanged were not)"
            )

            # 5. Work a synced resource again without a change.
            await client.invalidate(bob)
            await wait_for_synced(events, 1)

        row = await client.get_resource("user", "user3@hello.com")
        assert row is not None
        print(
            f"get_resource: {row.object_id} is {row.state}, name {row.object.name!r}, "
            f"attempt {row.attempt}"
        )
        rows = await client.list_resources(kind="user")
        states = Counter(r.state.value for r in rows)
        async with client.transaction() as tx:
            app = dict(await tx.execute(f"select email, name from {table}"))

    expected = {u.email: u.name for u in directory.users.values()}
    expected |= {"bob@hello.com": "Bob", "carol@hello.com": "Carol"}
    print(
        f"converged: {app == expected}; {len(app)} users in {table}; "
        f"resources {dict(states)}; {controller.worked} works in all"
    )


async def main() -> None:
    # A schema of this run's own, dropped at the end, so the example can run
    # again from scratch (a real deployment keeps its schema).
    schema = f"example_users_{os.getpid()}"
    try:
        await run(schema)
    finally:
        with psycopg.connect(DSN, autocommit=True) as conn:
            conn.execute(sql.SQL("drop schema if exists {} cascade").format(sql.Identifier(schema)))


if __name__ == "__main__":
    trio.run(main)
