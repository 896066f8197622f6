"""A controller whose work awaits an asyncio-only library (aiohttp).

With ``Config(asyncio=True)`` the client runs inside a trio-asyncio loop, so
``work`` can call asyncio code through ``trio_asyncio.aio_as_trio``. The
work timeout reaches the asyncio side: the slow request below is cancelled
there too (and, with one attempt allowed here, its resource degraded).

A tiny HTTP API (plain Trio) stands in for the remote service; its
``/slow`` page never answers in time.

Run: python examples/asyncio_http_worker.py [DSN]   (default: $TRIO_DELTA_DSN or local)
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from dataclasses import dataclass
from functools import partial
from typing import Any, ClassVar

import aiohttp
import trio
import trio_asyncio

import trio_delta as delta

DSN = (sys.argv[1] if len(sys.argv) > 1 else None) or os.environ.get(
    "TRIO_DELTA_DSN", "host=127.0.0.1 user=postgres dbname=test"
)
SCHEMA = os.environ.get("EXAMPLE_SCHEMA", "asyncio_example")


@dataclass
class Page:
    kind: ClassVar[str] = "page"
    path: str

    def id(self) -> str:
        return self.path


# -- the asyncio side: what an asyncio SDK would be ---------------------------------


async def fetch_json(url: str) -> Any:
    try:
        async with aiohttp.ClientSession() as session, session.get(url) as response:
            response.raise_for_status()
            return await response.json()
    except asyncio.CancelledError:
        print(f"asyncio side: request to {url.rsplit('/', 1)[-1]} cancelled")
        raise


class PageChecker(delta.Controller[Page]):
    def __init__(self, base_url: str) -> None:
        self.base_url = base_url

    async def work(self, resource: delta.Resource[Page]) -> None:
        body = await trio_asyncio.aio_as_trio(fetch_json)(self.base_url + resource.object.path)
        print(f"{resource.object.path}: {body['title']!r}")


# -- a stand-in HTTP service ----------------------------------------------------


async def serve(stream: trio.SocketStream) -> None:
    request = await stream.receive_some(4096)
    path = request.split(b" ", 2)[1].decode()
    if path == "/slow":
        await trio.sleep(60)  # longer than any work may take
    body = json.dumps({"title": f"Page {path}"}).encode()
    head = f"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {len(body)}\r\n"
    await stream.send_all(head.encode() + b"connection: close\r\n\r\n" + body)
    await stream.aclose()


async def main() -> None:
    await delta.migrate(DSN, schema=SCHEMA)
    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(partial(trio.serve_tcp, serve, 0, host="127.0.0.1"))
        port = listeners[0].socket.getsockname()[1]
        controllers = delta.Controllers()
        delta.add_controller(controllers, PageChecker(f"http://127.0.0.1:{port}"))
        config = delta.Config(schema=SCHEMA, asyncio=True, work_timeout=1.0)
        async with delta.open_delta_client(DSN, controllers, config=config) as client:
            with client.subscribe() as events:
                for path in ("/home", "/slow"):
                    await client.inform(Page(path), delta.InformOpts(max_attempts=1))
                for _ in range(2):
                    event = await events.receive()
                    print(f"{event.resource.object_id}: {event.category.value}")
        nursery.cancel_scope.cancel()


if __name__ == "__main__":
    trio.run(main)
