"""A small controllers module for the CLI tests (``trio-delta run tests.cli.app:...``).

``cli-item`` objects named ``bad-...`` fail in ``work``; the others sync.
The informer yields ``CLI_TEST_ITEMS`` (default 3) items ``run-0``, ``run-1``...
and, when ``CLI_TEST_SLOW`` is set, ``slow-0`` whose work takes 30 s.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import ClassVar

import trio

import trio_delta as delta


@dataclass
class Item:
    kind: ClassVar[str] = "cli-item"
    name: str
    colour: str = "blue"
    extra: dict[str, int] = field(default_factory=dict[str, int])

    def id(self) -> str:
        return self.name


class ItemController(delta.Controller[Item]):
    async def inform(self, opts: delta.InformOptions, send: trio.MemorySendChannel[Item]) -> None:
        async with send:
            for i in range(int(os.environ.get("CLI_TEST_ITEMS", "3"))):
                await send.send(Item(f"run-{i}"))
            if os.environ.get("CLI_TEST_SLOW"):
                await send.send(Item("slow-0"))

    async def work(self, resource: delta.Resource[Item]) -> None:
        if resource.object.name.startswith("bad"):
            raise RuntimeError(f"boom: {resource.object.name}")
        if resource.object.name.startswith("slow"):
            await trio.sleep(30)


def make_controllers() -> delta.Controllers:
    controllers = delta.Controllers()
    delta.add_controller(controllers, ItemController())
    return controllers


controllers = make_controllers()
not_controllers = 42
