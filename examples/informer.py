"""An informer with a cursor over a paginated source.

The "source" is an in-process list of articles with ``updated`` timestamps.
The informer fetches pages of articles updated after ``opts.after``; the
worker "publishes" them. Midway, some articles change upstream and
``schedule_inform`` picks up just those.

Run: python examples/informer.py [DSN]   (default: $TRIO_DELTA_DSN or local)
"""

from __future__ import annotations

import os
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import ClassVar

import psycopg
import trio
import trio.lowlevel
from psycopg import sql

import trio_delta as delta

DSN = (sys.argv[1] if len(sys.argv) > 1 else None) or os.environ.get(
    "TRIO_DELTA_DSN", "host=127.0.0.1 user=postgres dbname=test"
)
T0 = datetime(2030, 1, 1, tzinfo=UTC)


@dataclass
class Article:
    kind: ClassVar[str] = "article"
    slug: str
    title: str
    updated: datetime

    def id(self) -> str:
        return self.slug

    def created_at(self) -> datetime:
        return self.updated  # the cursor follows the source's own clock

    def compare(self, other: Article) -> int:
        return (self.updated > other.updated) - (self.updated < other.updated)


class Source:
    """A paginated outside system."""

    def __init__(self) -> None:
        self.articles = {
            f"a{i}": Article(f"a{i}", f"Article {i}", T0 + timedelta(minutes=i)) for i in range(50)
        }
        self.requests: list[datetime | None] = []

    async def changed_after(self, after: datetime | None, page: int = 20) -> AsyncIterator[Article]:
        self.requests.append(after)
        todo = sorted(
            (a for a in self.articles.values() if after is None or a.updated > after),
            key=lambda a: a.updated,
        )
        for start in range(0, len(todo), page):
            await trio.lowlevel.checkpoint()  # a page fetch
            for article in todo[start : start + page]:
                yield article


class ArticleController(delta.Controller[Article]):
    def __init__(self, source: Source) -> None:
        self.source = source
        self.published: dict[str, str] = {}

    async def inform(
        self, opts: delta.InformOptions, send: trio.MemorySendChannel[Article]
    ) -> None:
        async with send:
            async for article in self.source.changed_after(opts.after):
                await send.send(article)

    async def work(self, resource: delta.Resource[Article]) -> None:
        self.published[resource.object.slug] = resource.object.title


async def wait_for(predicate: object) -> None:
    with trio.fail_after(30):
        while not predicate():  # type: ignore[operator]  # noqa: ASYNC110
            await trio.sleep(0.05)


async def main() -> None:
    # A schema of this run's own, dropped at the end, so the example can be
    # run again from scratch (a real deployment keeps its schema).
    schema = f"example_informer_{os.getpid()}"
    await delta.migrate(DSN, schema=schema)
    try:
        await run(schema)
    finally:
        with psycopg.connect(DSN, autocommit=True) as conn:
            conn.execute(sql.SQL("drop schema {} cascade").format(sql.Identifier(schema)))


async def run(schema: str) -> None:
    source = Source()
    controller = ArticleController(source)
    controllers = delta.Controllers()
    delta.add_controller(controllers, controller)
    async with delta.open_delta_client(DSN, controllers, config=delta.Config(schema=schema)) as c:
        await wait_for(lambda: len(controller.published) == 50)
        print(f"first run: published {len(controller.published)} articles")
        for slug in ("a3", "a7"):
            old = source.articles[slug]
            source.articles[slug] = Article(slug, old.title + " (edited)", T0 + timedelta(days=1))
        await c.schedule_inform("article")
        await wait_for(
            lambda: (
                controller.published["a7"].endswith("(edited)")
                and controller.published["a3"].endswith("(edited)")
            )
        )
        state = await c.get_informer("article")
        assert state is not None
        print(f"second run asked for changes after {source.requests[-1]:%Y-%m-%d %H:%M}")
        print(f"cursor now {state.cursor:%Y-%m-%d %H:%M}; a3 -> {controller.published['a3']!r}")


if __name__ == "__main__":
    trio.run(main)
