"""The LISTEN service: turns database notifications into fetcher wake-ups.

One dedicated connection (never from the pool: LISTEN needs a session). If
it drops, we reconnect with exponential backoff; meanwhile the fetcher's poll
keeps work moving, and after every (re)connect we deliver a ``None`` payload
("anything may have happened") in case a notification was missed meanwhile.
"""

from __future__ import annotations

from collections.abc import Callable

import trio

from .._errors import StoreError
from .._logs import Throttled, get_logger
from .._store.port import Store

log = get_logger("trio_delta.listener")


async def run_listener(
    store: Store,
    on_payload: Callable[[str | None], None],
    on_lost: Callable[[], None] = lambda: None,
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    storm = Throttled(log)  # retries of one failure: not a warning each
    started = False
    delay = 0.1
    while True:
        try:
            async with store.queue.listen() as listener:
                if delay > 0.1:
                    log.info("LISTEN connection re-established")
                delay = 0.1
                on_payload(None)
                if not started:
                    task_status.started()
                    started = True
                while True:
                    on_payload(await listener.wait())
        except StoreError as exc:
            on_lost()
            storm.warning("LISTEN connection lost, reconnecting in %.1fs: %s", delay, exc)
        if not started:
            # Start anyway: the poll fallback works without notifications.
            task_status.started()
            started = True
        await trio.sleep(delay)
        delay = min(delay * 2, 10.0)
