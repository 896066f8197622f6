"""The LISTEN service: turns database notifications into fetcher wake-ups.

One dedicated connection (never from the pool: LISTEN needs a session). If
it drops, we reconnect with exponential backoff; meanwhile the fetcher's poll
keeps work moving, and after every (re)connect we wake the fetcher once in
case a notification was missed while we were away.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection

import trio

from .._errors import StoreError
from .._store.base import Store

log = logging.getLogger("trio_delta.listener")


async def run_listener(
    store: Store,
    namespaces: Collection[str],
    on_wake: Callable[[], None],
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    started = False
    delay = 0.1
    while True:
        try:
            async with store.listen() as listener:
                if delay > 0.1:
                    log.info("LISTEN connection re-established")
                delay = 0.1
                on_wake()
                if not started:
                    task_status.started()
                    started = True
                while True:
                    payload = await listener.wait()
                    if payload in namespaces:
                        on_wake()
        except StoreError as exc:
            log.warning("LISTEN connection lost, reconnecting in %.1fs: %s", delay, exc)
        if not started:
            # Start anyway: the poll fallback works without notifications.
            task_status.started()
            started = True
        await trio.sleep(delay)
        delay = min(delay * 2, 10.0)
