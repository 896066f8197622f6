"""The in-memory adapter of the store port, for deterministic tests.

:class:`MemoryStore` composes the port's three parts over one set of
:class:`~.tables.Tables`. Everything is pure Trio, and time never comes
from here: methods take ``now``; :meth:`MemoryStore.database_now` returns the
anchor given to the constructor, advanced by Trio's clock. One deliberate
difference from Postgres: a failed attempt's row (claimable at its retry)
is announced too, so that clients on this store need no poll.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta

import trio

from ...migrations.runner import LATEST_VERSION
from .control import MemoryControl
from .insights import MemoryInsights
from .queue import MemoryQueue
from .tables import MemoryListener, MemoryTransaction, Tables

__all__ = [
    "DEFAULT_ANCHOR",
    "MemoryListener",
    "MemoryStore",
    "MemoryTransaction",
    "open_memory_store",
]

#: The default answer of :meth:`MemoryStore.database_now`.
DEFAULT_ANCHOR = datetime(2030, 1, 1, tzinfo=UTC)


class MemoryStore:
    """The store in process memory; see the module docstring."""

    # Listeners are in-process channels, and complete() also announces rows
    # failed to a later retry: a fetcher on this store needs no poll.
    notifications_reliable = True

    def __init__(
        self, *, anchor: datetime = DEFAULT_ANCHOR, lock_timeout: float | None = None
    ) -> None:
        self.schema = "memory"
        self._anchor = anchor
        self._started_at: float | None = None
        self.tables = Tables(lock_timeout=lock_timeout)
        self.queue = MemoryQueue(self.tables)
        self.control = MemoryControl(self.tables)
        self.insights = MemoryInsights(self.tables)

    def __repr__(self) -> str:
        return f"<MemoryStore {len(self.tables.rows)} rows>"

    async def ping(self) -> None:
        await trio.lowlevel.checkpoint()

    def pool_usage(self) -> tuple[int, int]:
        return (0, 0)

    async def database_now(self) -> datetime:
        """The anchor at the first call, then the anchor plus the Trio time
        elapsed since: clients started later on a shared store agree on the
        time, as they would on one database."""
        await trio.lowlevel.checkpoint()
        now = trio.current_time()
        if self._started_at is None:
            self._started_at = now
        return self._anchor + timedelta(seconds=now - self._started_at)

    async def schema_version(self) -> int | None:
        await trio.lowlevel.checkpoint()
        return LATEST_VERSION

    async def aclose(self) -> None:
        await trio.lowlevel.checkpoint()


@asynccontextmanager
async def open_memory_store(
    *,
    anchor: datetime = DEFAULT_ANCHOR,
    lock_timeout: float | None = None,
) -> AsyncGenerator[MemoryStore, None]:
    """A fresh, empty memory store whose ``database_now()`` is ``anchor``;
    upserts wait at most ``lock_timeout`` for rows a transaction holds."""
    store = MemoryStore(anchor=anchor, lock_timeout=lock_timeout)
    try:
        yield store
    finally:
        await store.aclose()
