"""The only module that touches trio-asyncio and asyncio.

psycopg 3 speaks asyncio, not Trio. We run its coroutines on a trio-asyncio
loop opened for the lifetime of a store; every database call crosses over
here exactly once (a whole batch per crossing, since each crossing costs
about as much as a round trip to a local server).
"""

from __future__ import annotations

# trio_asyncio must be imported before psycopg's modules are used: it replaces
# asyncio.get_running_loop with a version that knows its loop.
import trio_asyncio  # pyright: ignore[reportMissingTypeStubs]  # isort: skip

import asyncio
from collections.abc import AsyncGenerator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import ParamSpec, TypeVar

import psycopg.waiting

# psycopg.waiting did `from asyncio import get_running_loop` when it was first
# imported, which may be before trio_asyncio patched asyncio (a user who
# imports psycopg first). That original C function does not see trio-asyncio's
# loop and fails with "no running event loop"; point it at the patched one.
psycopg.waiting.get_running_loop = asyncio.get_running_loop  # type: ignore[attr-defined]

P = ParamSpec("P")
R = TypeVar("R")


class Bridge:
    """Runs asyncio coroutine functions from Trio on one trio-asyncio loop."""

    __slots__ = ()

    async def run(self, fn: Callable[P, Awaitable[R]], *args: P.args, **kwargs: P.kwargs) -> R:
        """Await ``fn(*args, **kwargs)`` on the asyncio side; Trio cancellation
        cancels the asyncio task (psycopg then cancels the query)."""

        async def call() -> R:
            return await fn(*args, **kwargs)

        result: R = await trio_asyncio.aio_as_trio(call)()  # pyright: ignore[reportUnknownMemberType,reportUnknownVariableType]
        return result  # pyright: ignore[reportUnknownVariableType]


@asynccontextmanager
async def open_bridge() -> AsyncGenerator[Bridge, None]:
    """Open a trio-asyncio loop for the duration of the block."""
    async with trio_asyncio.open_loop():  # pyright: ignore[reportUnknownMemberType]
        yield Bridge()
