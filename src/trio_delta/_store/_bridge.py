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


def _sole_exception(group: BaseExceptionGroup[BaseException]) -> BaseException | None:
    leaves: list[BaseException] = []
    pending: list[BaseException] = [group]
    while pending:
        exc = pending.pop()
        if isinstance(exc, BaseExceptionGroup):
            pending.extend(exc.exceptions)  # pyright: ignore[reportUnknownMemberType,reportUnknownArgumentType]
        else:
            leaves.append(exc)
    return leaves[0] if len(leaves) == 1 else None


@asynccontextmanager
async def open_bridge() -> AsyncGenerator[Bridge, None]:
    """Open a trio-asyncio loop for the duration of the block.

    trio-asyncio's loop runs in nurseries of its own, which would wrap
    whatever the block raises in exception groups; a lone exception is
    re-raised as itself so callers see what their own code raised.
    """
    try:
        async with trio_asyncio.open_loop():  # pyright: ignore[reportUnknownMemberType]
            yield Bridge()
    except BaseExceptionGroup as group:
        sole = _sole_exception(group)
        if sole is None:
            raise
        raise sole from None
