"""Polling helpers for end-to-end tests on the real clock.

Postgres state changes without a Trio event we could wait on, so these poll,
bounded by a deadline that fails the test loudly.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import trio

DEADLINE = 10.0


async def wait_until(predicate: Callable[[], bool], *, within: float = DEADLINE) -> None:
    with trio.fail_after(within):
        while not predicate():
            await trio.sleep(0.02)


async def wait_until_async(
    predicate: Callable[[], Awaitable[bool]], *, within: float = DEADLINE
) -> None:
    with trio.fail_after(within):
        while not await predicate():
            await trio.sleep(0.02)
