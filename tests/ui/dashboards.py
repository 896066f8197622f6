"""What the dashboard tests share: a controller whose work can be told to
fail for good, and a dashboard served on a free loopback port."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from functools import partial
from typing import Any, ClassVar

import httpx
import trio

import trio_delta as delta
from trio_delta.ui import serve_dashboard


@dataclass
class Order:
    kind: ClassVar[str] = "order"
    key: str
    amount: int = 1

    def id(self) -> str:
        return self.key


class OrderController(delta.Controller[Order]):
    """Syncs every order, except those in ``broken``: degraded at once."""

    def __init__(self) -> None:
        self.broken: set[str] = set()

    async def work(self, resource: delta.Resource[Order]) -> None:
        if resource.object.key in self.broken:
            raise delta.TerminalError(f"payment API refused {resource.object.key}")


def order_controllers(controller: OrderController) -> delta.Controllers:
    controllers = delta.Controllers()
    delta.add_controller(controllers, controller)
    return controllers


async def http(method: str, url: str, **options: Any) -> httpx.Response:
    """``httpx.request`` off the Trio thread (the dashboard may be served on it)."""
    return await trio.to_thread.run_sync(lambda: httpx.request(method, url, **options))


@asynccontextmanager
async def served(dsn: str, schema: str, **options: Any) -> AsyncIterator[str]:
    """The dashboard on 127.0.0.1 (any free port): its base URL."""
    options.setdefault("refresh_seconds", 0.3)
    async with trio.open_nursery() as nursery:
        bound = await nursery.start(
            partial(serve_dashboard, dsn, listen="127.0.0.1:0", schema=schema, **options)
        )
        yield bound[0].rstrip("/")
        nursery.cancel_scope.cancel()
