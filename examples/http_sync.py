"""Keep an HTTP API in sync with another: a catalog mirrored to a shop.

A small fake HTTP API runs on 127.0.0.1 (plain Trio streams, no web
framework). It has two sides:

* ``GET /items?updated_after=...&cursor=...`` pages through the catalog,
  items with ``updated_at`` timestamps: the source of truth;
* ``PUT /published/{sku}`` and ``POST /published/{sku}/archive``: the shop,
  which our worker keeps matching the catalog.

The informer pages through items changed after ``opts.after`` (the cursor
follows the items' own ``updated_at``); the worker PUTs each item, or
archives it and deletes its resource. The shop answers one PUT with a 503,
which is retried. Then the catalog changes; an on-demand informer run fetches
only what changed, and the shop converges again.

Run: python examples/http_sync.py [DSN]   (default: $TRIO_DELTA_DSN or local)
"""

from __future__ import annotations

import json
import os
import sys
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any, ClassVar
from urllib.parse import parse_qs, urlencode, urlsplit

import psycopg
import trio
from psycopg import sql

import trio_delta as delta

DSN = (sys.argv[1] if len(sys.argv) > 1 else None) or os.environ.get(
    "TRIO_DELTA_DSN", "host=127.0.0.1 user=postgres dbname=test"
)
PAGE = 20
T0 = datetime(2030, 1, 1, tzinfo=UTC)


# -- the object ---------------------------------------------------------------------


@dataclass
class Item:
    kind: ClassVar[str] = "item"
    sku: str
    name: str
    price_cents: int
    updated_at: datetime
    archived: bool = False

    def id(self) -> str:
        return self.sku

    def created_at(self) -> datetime:
        return self.updated_at  # the informer's cursor follows the catalog's clock

    def compare(self, other: Item) -> int:  # an older copy never overwrites a newer one
        return (self.updated_at > other.updated_at) - (self.updated_at < other.updated_at)

    @classmethod
    def settings(cls) -> delta.ObjectSettings:
        return delta.ObjectSettings(parallelism=4)  # at most 4 requests at once per client

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Item:
        return cls(**{**data, "updated_at": datetime.fromisoformat(data["updated_at"])})


# -- a minimal HTTP/1.1 client and server on Trio streams ---------------------------


async def read_message(stream: trio.abc.ReceiveStream) -> tuple[str, dict[str, str], bytes]:
    """One HTTP message: (start line, headers, body); the peer closes after it."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = await stream.receive_some(65536)
        if not chunk:
            raise ConnectionError("connection closed mid-headers")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    start, *lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines)}
    length = int(headers.get("content-length", "0"))
    while len(body) < length:
        chunk = await stream.receive_some(65536)
        if not chunk:
            raise ConnectionError("connection closed mid-body")
        body += chunk
    return start, headers, body


def encode_message(start: str, payload: Any) -> bytes:
    body = b"" if payload is None else json.dumps(payload).encode()
    head = (
        f"{start}\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        "Connection: close\r\n\r\n"
    )
    return head.encode("latin-1") + body


class Api:
    """The worker's and informer's HTTP client: one connection per request."""

    def __init__(self, base_url: str) -> None:
        url = urlsplit(base_url)
        self.host, self.port = url.hostname or "127.0.0.1", url.port or 80

    async def request(self, method: str, target: str, payload: Any = None) -> tuple[int, Any]:
        stream = await trio.open_tcp_stream(self.host, self.port)
        async with stream:
            message = encode_message(f"{method} {target} HTTP/1.1", payload)
            host = f"Host: {self.host}:{self.port}\r\n".encode()
            await stream.send_all(message.replace(b"\r\n", b"\r\n" + host, 1))
            start, _, body = await read_message(stream)
        status = int(start.split()[1])
        return status, json.loads(body) if body else None


class FakeCatalogApi:
    """The outside world: a catalog to read from and a shop to write to."""

    def __init__(self, items: int) -> None:
        self.ticks = 0
        self.catalog: dict[str, Item] = {}
        for i in range(items):
            self.upsert(Item(f"sku-{i:03d}", f"Item {i}", 100 + i, self.now()))
        self.shop: dict[str, dict[str, Any]] = {}
        self.flaky = {"sku-007"}  # the first PUT of these answers 503
        self.served: Counter[str] = Counter()
        self.fetched: list[int] = []  # items returned by each informer run's pages

    def now(self) -> datetime:
        self.ticks += 1  # every change gets a distinct, later timestamp
        return T0 + timedelta(seconds=self.ticks)

    def upsert(self, item: Item) -> None:
        self.catalog[item.sku] = item

    def change(self, sku: str, **changes: Any) -> None:
        self.upsert(Item(**{**asdict(self.catalog[sku]), **changes, "updated_at": self.now()}))

    async def handle(self, stream: trio.SocketStream) -> None:
        async with stream:
            start, _, body = await read_message(stream)
            method, target, _ = start.split(" ", 2)
            status, payload = self.route(method, target, json.loads(body) if body else None)
            reason = {200: "OK", 201: "Created", 404: "Not Found", 503: "Unavailable"}[status]
            await stream.send_all(encode_message(f"HTTP/1.1 {status} {reason}", payload))

    def route(self, method: str, target: str, body: Any) -> tuple[int, Any]:
        url = urlsplit(target)
        parts = url.path.strip("/").split("/")
        if method == "GET" and parts == ["items"]:
            self.served["GET /items"] += 1
            query = {k: v[0] for k, v in parse_qs(url.query).items()}
            after = (
                datetime.fromisoformat(query["updated_after"]) if "updated_after" in query else None
            )
            changed = sorted(
                (i for i in self.catalog.values() if after is None or i.updated_at > after),
                key=lambda i: (i.updated_at, i.sku),
            )
            offset = int(query.get("cursor", "0"))
            page = changed[offset : offset + PAGE]
            more = offset + PAGE < len(changed)
            return 200, {
                "items": [{**asdict(i), "updated_at": i.updated_at.isoformat()} for i in page],
                "next_cursor": str(offset + PAGE) if more else None,
            }
        if method == "PUT" and len(parts) == 2 and parts[0] == "published":
            self.served["PUT /published"] += 1
            if parts[1] in self.flaky:
                self.flaky.discard(parts[1])
                self.served["503"] += 1
                return 503, {"error": "try again later"}
            current = self.shop.get(parts[1])
            if current is None or current["updated_at"] <= body["updated_at"]:  # idempotent
                self.shop[parts[1]] = body
            return (201 if current is None else 200), self.shop[parts[1]]
        if method == "POST" and len(parts) == 3 and parts[0::2] == ["published", "archive"]:
            self.served["POST /archive"] += 1
            self.shop.pop(parts[1], None)  # archiving twice is fine
            return 200, {"archived": parts[1]}
        return 404, {"error": f"no route for {method} {url.path}"}

    def converged(self) -> bool:
        expected = {sku: i for sku, i in self.catalog.items() if not i.archived}
        return self.shop.keys() == expected.keys() and all(
            self.shop[sku]["updated_at"] == i.updated_at.isoformat() for sku, i in expected.items()
        )


# -- the controller -----------------------------------------------------------------


class ItemController(delta.Controller[Item]):
    def __init__(self, api: Api, on_run: Callable[[int], None]) -> None:
        self.api = api
        self.on_run = on_run

    async def pages(self, after: datetime | None) -> AsyncIterator[Item]:
        cursor: str | None = "0"
        while cursor is not None:
            query = {"cursor": cursor, **({"updated_after": after.isoformat()} if after else {})}
            status, page = await self.api.request("GET", f"/items?{urlencode(query)}")
            if status != 200:
                raise RuntimeError(f"GET /items: HTTP {status}")  # the run is retried later
            for data in page["items"]:
                yield Item.from_json(data)
            cursor = page["next_cursor"]

    async def inform(self, opts: delta.InformOptions, send: trio.MemorySendChannel[Item]) -> None:
        sent = 0
        async with send:
            async for item in self.pages(opts.after):  # only what changed since the cursor
                await send.send(item)
                sent += 1
        self.on_run(sent)

    async def work(self, resource: delta.Resource[Item]) -> None:
        item = resource.object
        if item.archived:
            status, _ = await self.api.request("POST", f"/published/{item.sku}/archive")
            if status != 200:
                raise RuntimeError(f"archive {item.sku}: HTTP {status}")
            raise delta.ResourceDelete("archived in the catalog")
        body = {
            "name": item.name,
            "price_cents": item.price_cents,
            "updated_at": item.updated_at.isoformat(),
        }
        status, _ = await self.api.request("PUT", f"/published/{item.sku}", body)
        if status >= 300:
            raise RuntimeError(f"PUT {item.sku}: HTTP {status}")  # failed: retried with backoff


# -- the run ------------------------------------------------------------------------


async def wait_until(predicate: Callable[[], Any], what: str) -> None:
    with trio.fail_after(60):
        while not await predicate():  # noqa: ASYNC110  (it reads the database)
            await trio.sleep(0.05)
    print(what)


async def run(schema: str) -> None:
    fake = FakeCatalogApi(items=45)
    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(partial(trio.serve_tcp, fake.handle, 0, host="127.0.0.1"))
        port = listeners[0].socket.getsockname()[1]
        print(f"fake catalog API on http://127.0.0.1:{port}")

        controller = ItemController(Api(f"http://127.0.0.1:{port}"), fake.fetched.append)
        controllers = delta.Controllers()
        delta.add_controller(controllers, controller)
        config = delta.Config(
            schema=schema,
            retry_policy=lambda attempt: 0.2,  # the default waits attempt**4 seconds
        )
        async with delta.open_delta_client(DSN, controllers, config=config) as client:

            async def settled(runs: int) -> bool:
                informer = await client.get_informer("item")
                if (
                    informer is None
                    or informer.lease_owner
                    or informer.requested_at
                    or len(fake.fetched) < runs
                ):
                    return False  # an informer run is due, running or not yet recorded
                rows = await client.list_resources(kind="item")
                return fake.converged() and all(
                    r.state in (delta.ResourceState.SYNCED, delta.ResourceState.DELETED)
                    for r in rows
                )

            # The informer runs at once for a kind new to the schema.
            await wait_until(lambda: settled(1), "first sync done")
            print(
                f"  informer fetched {fake.fetched[0]} items in {fake.served['GET /items']} pages"
            )

            informer = await client.get_informer("item")
            assert informer is not None
            assert informer.cursor is not None
            cursor = informer.cursor  # the newest updated_at the first run saw

            # The catalog changes: two edits, two archived items, one new item.
            fake.change("sku-001", price_cents=999)
            fake.change("sku-002", name="Item 2 (renamed)")
            fake.change("sku-010", archived=True)
            fake.change("sku-011", archived=True)
            fake.upsert(Item("sku-100", "Item 100", 4200, fake.now()))
            await client.schedule_inform("item")  # instead of waiting for the next interval
            await wait_until(lambda: settled(2), "second sync done")
            print(
                f"  informer fetched {fake.fetched[1]} items, those updated after "
                f"{cursor:%Y-%m-%d %H:%M:%S}"
            )

            rows = await client.list_resources(kind="item")
            states = Counter(r.state.value for r in rows)
            retried = [r.object_id for r in rows if r.errors]
        nursery.cancel_scope.cancel()

    print(
        f"converged: {len(fake.shop)} items published, {states['deleted']} archived, "
        f"{states['failed'] + states['degraded']} failing"
    )
    print(f"  resources by state: {dict(sorted(states.items()))}")
    print(f"  retried after an error: {', '.join(retried) or 'none'}")
    print(f"  fake API served: {dict(sorted(fake.served.items()))}")


async def main() -> None:
    # A schema of this run's own, dropped at the end, so the example can run
    # again from scratch (a real deployment keeps its schema).
    schema = f"example_http_{os.getpid()}"
    await delta.migrate(DSN, schema=schema)
    try:
        await run(schema)
    finally:
        with psycopg.connect(DSN, autocommit=True) as conn:
            conn.execute(sql.SQL("drop schema {} cascade").format(sql.Identifier(schema)))


if __name__ == "__main__":
    trio.run(main)
