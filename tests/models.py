"""Objects and controllers shared by the tests."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import ClassVar

import trio

import trio_delta as delta


@dataclass
class User:
    kind: ClassVar[str] = "user"
    email: str
    name: str
    updated_at: int = 0

    def id(self) -> str:
        return self.email

    def compare(self, other: User) -> int:
        return self.updated_at - other.updated_at


@dataclass
class Note:
    kind: ClassVar[str] = "note"
    key: str
    text: str = ""

    def id(self) -> str:
        return self.key


class RecordingController(delta.Controller[User]):
    """Records every work call; behaviour per object id is configurable."""

    def __init__(self) -> None:
        self.worked: list[tuple[str, int]] = []
        self.fail: dict[str, int] = {}  # id -> number of times to fail
        self.delete: set[str] = set()
        self.block: trio.Event | None = None
        self.started = trio.Event()

    async def work(self, resource: delta.Resource[User]) -> None:
        self.worked.append((resource.object.email, resource.attempt))
        self.started.set()
        if self.block is not None:
            await self.block.wait()
        if resource.object.email in self.delete:
            raise delta.ResourceDelete("gone")
        left = self.fail.get(resource.object.email, 0)
        if left:
            self.fail[resource.object.email] = left - 1
            raise RuntimeError(f"boom {resource.object.email}")


class NoteController(delta.Controller[Note]):
    def __init__(self) -> None:
        self.worked: list[str] = []

    async def work(self, resource: delta.Resource[Note]) -> None:
        self.worked.append(resource.object.key)


def controllers_for(*controllers: delta.Controller[object]) -> delta.Controllers:
    out = delta.Controllers()
    for c in controllers:
        delta.add_controller(out, c)
    return out


# -- polling helpers (end-to-end tests run on the real clock) -----------------


async def wait_until(
    condition: Callable[[], Awaitable[bool]], *, within: float = 10.0, every: float = 0.02
) -> None:
    """Poll ``condition`` until it is true; fail after ``within`` seconds."""
    with trio.fail_after(within):
        while not await condition():
            await trio.sleep(every)


async def wait_for_state(
    client: delta.Client,
    kind: str,
    object_id: str,
    state: delta.ResourceState,
    *,
    within: float = 10.0,
) -> delta.ResourceRow[object]:
    """Poll until the resource is in ``state``; return that row."""
    found: list[delta.ResourceRow[object]] = []

    async def reached() -> bool:
        row = await client.get_resource(kind, object_id)
        if row is not None and row.state is state:
            found.append(row)
            return True
        return False

    await wait_until(reached, within=within)
    return found[-1]
