"""Which work is paused, as this client last read it.

Pauses live in the database (the ``pauses`` table), so that they hold for
every client and survive restarts. A client reads them when it starts, when
a NOTIFY says they changed (within milliseconds), and at every poll (a lost
notification costs at most ``poll_interval``). The fetcher leaves paused
work out of its claims and the informers of a paused kind wait: nothing is
added to the claim query, which stays as fast for work that is not paused.

The same poll asks whether the rows this client works are still pending
(``on_poll``): a cancel whose notification was lost, or that had none to
send (``Config.listen=False``), reaches the work then.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable

import trio

from .._errors import StoreError
from .._logs import Throttled, get_logger
from .._store.params import Pause
from .context import EngineContext

log = get_logger("trio_delta.pauses")


class Pauses:
    def __init__(
        self,
        ctx: EngineContext,
        *,
        on_change: Callable[[], None],
        on_poll: Callable[[], Awaitable[None]],
    ) -> None:
        # Retries of one failure: not a warning each (per client: a
        # throttle shared across clients would hide one's first warning).
        self._storm = Throttled(log)
        self._control = ctx.store.control
        self._poll = math.inf if ctx.notified else ctx.config.poll_interval
        self._pauses: list[Pause] = []
        self._wake = trio.Event()
        self._on_change = on_change
        self._on_poll = on_poll

    def covers(self, kind: str, namespace: str | None) -> bool:
        """Whether work of ``kind`` in ``namespace`` is paused (``namespace``
        None: the kind itself, which stops its informer)."""
        return any(p.covers(kind, namespace) for p in self._pauses)

    def wake(self) -> None:
        """Read the pauses again soon (a NOTIFY said they changed)."""
        self._wake.set()

    async def refresh(self) -> None:
        """Read the pauses now; on a change, tell the fetcher and informers."""
        pauses = await self._control.list_pauses()
        before = {(p.kind, p.namespace) for p in self._pauses}
        after = {(p.kind, p.namespace) for p in pauses}
        self._pauses = pauses
        if before != after:
            for pause in pauses:
                if (pause.kind, pause.namespace) not in before:
                    log.info(
                        "paused: %s (by %s)",
                        pause,
                        pause.paused_by,
                        extra={"kind": pause.kind, "namespace": pause.namespace},
                    )
            for kind, namespace in before - after:
                log.info(
                    "resumed: %s",
                    Pause(kind, namespace),
                    extra={"kind": kind, "namespace": namespace},
                )
            self._on_change()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        try:
            await self.refresh()
        except StoreError as exc:
            self._storm.warning("reading pauses failed, trying again: %s", exc)
        task_status.started()
        while True:
            with trio.move_on_after(self._poll) as waited:
                await self._wake.wait()
            self._wake = trio.Event()
            try:
                await self.refresh()
                if waited.cancelled_caught:  # a poll, not a notification
                    await self._on_poll()
            except StoreError as exc:
                self._storm.warning("reading pauses failed, trying again: %s", exc)
