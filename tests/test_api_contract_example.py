"""The example of shared/API.md, run as a new user would write it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import trio

import trio_delta as delta

from .helpers import wait_until_async


@dataclass
class User:
    kind: ClassVar[str] = "user"
    email: str
    name: str
    updated_at: int

    def id(self) -> str:
        return self.email

    def compare(self, other: User) -> int:
        return self.updated_at - other.updated_at


FETCHED: list[User] = [User("alice@hello.com", "Alice", 1)]


async def fetch_users(after: object) -> list[User]:
    await trio.lowlevel.checkpoint()
    return list(FETCHED)


class UserController(delta.Controller[User]):
    def __init__(self) -> None:
        self.worked: list[tuple[str, int]] = []

    async def inform(self, opts: delta.InformOptions, send: trio.MemorySendChannel[User]) -> None:
        async with send:
            for user in await fetch_users(after=opts.after):
                await send.send(user)

    async def work(self, resource: delta.Resource[User]) -> None:
        self.worked.append((resource.object.email, resource.object.updated_at))


async def test_api_md_example_works_as_written(pg_dsn: str, schema_name: str) -> None:
    dsn = pg_dsn
    controller = UserController()
    controllers = delta.Controllers()
    delta.add_controller(controllers, controller)

    await delta.migrate(dsn, schema=schema_name)
    await delta.migrate(dsn, schema=schema_name)  # idempotent

    config = delta.Config(schema=schema_name, poll_interval=0.2)
    async with delta.open_delta_client(
        dsn,
        controllers,
        namespaces={"default": delta.NamespaceConfig(max_workers=10)},
        config=config,
    ) as client:
        async with client.transaction() as tx:
            # In the test's own schema: the database is shared with other tests.
            await tx.execute(f"create table {schema_name}.app_user (email text primary key)")
            await tx.execute(f"set local search_path = {schema_name}")

        result = await client.inform(User("bob@hello.com", "Bob", 1))
        assert isinstance(result, delta.InformResult)
        assert isinstance(result.resource, delta.ResourceRow)
        assert result.already_exists is False

        async with client.transaction() as tx:
            await tx.execute(f"set local search_path = {schema_name}")
            await tx.execute("insert into app_user(email) values (%s)", ["bob@hello.com"])
            await client.inform_tx(tx, User("bob@hello.com", "Bob", 2))

        async def bob_synced_v2() -> bool:
            row = await client.get_resource("user", "bob@hello.com")
            return (
                row is not None
                and row.state is delta.ResourceState.SYNCED
                and row.object.updated_at == 2
            )

        await wait_until_async(bob_synced_v2)
        row = await client.get_resource("user", "bob@hello.com")
        assert row is not None
        assert row.object == User("bob@hello.com", "Bob", 2)
        assert await client.get_resource("user", "nobody@hello.com") is None

        # The informer ran at start and brought Alice in.
        async def alice_synced() -> bool:
            row = await client.get_resource("user", "alice@hello.com")
            return row is not None and row.state is delta.ResourceState.SYNCED

        await wait_until_async(alice_synced)
        rows = await client.list_resources(kind="user", state=delta.ResourceState.SYNCED)
        assert {r.object_id for r in rows} == {"alice@hello.com", "bob@hello.com"}
        assert [r.id for r in rows] == sorted(r.id for r in rows)

        assert isinstance(client.id, str)
        assert client.id
        await wait_until_async(lambda: _true_when(client.is_leader))

        with client.subscribe(
            delta.EventCategory.OBJECT_SYNCED, delta.EventCategory.OBJECT_FAILED
        ) as events:
            FETCHED.append(User("carol@hello.com", "Carol", 1))
            await client.schedule_inform("user", process_existing=True)
            seen: set[str] = set()
            with trio.fail_after(10):
                async for event in events:
                    assert event.category is delta.EventCategory.OBJECT_SYNCED
                    seen.add(event.resource.object_id)
                    if {"alice@hello.com", "carol@hello.com"} <= seen:
                        break

            await client.invalidate(User("bob@hello.com", "Bob", 2))
            with trio.fail_after(10):
                async for event in events:
                    if event.resource.object_id == "bob@hello.com":
                        break
    # Alice: informer at start, then process_existing re-worked her.
    assert controller.worked.count(("alice@hello.com", 1)) == 2
    assert ("carol@hello.com", 1) in controller.worked
    assert controller.worked.count(("bob@hello.com", 2)) == 2  # inform_tx, invalidate


async def _true_when(value: bool) -> bool:
    await trio.lowlevel.checkpoint()
    return value
