"""The completer: writes work outcomes back to the store in batches.

Workers hand their completions (the resource and the work's result) over a
bounded channel (a slow database slows the workers rather than growing
memory). A :class:`Judge` turns each into the outcome the store records.
The completer takes everything already waiting, up to ``batch_size``, and
writes it in one statement: under load batches fill themselves while the
previous write is in flight, and an idle system pays no batching delay. A
failed write is retried with backoff; the store applies outcomes
idempotently (guarded by the claimed attempt), so a retry after an unknown
result cannot double-apply.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from typing import Any

import trio

from .._errors import StoreError
from .._store.params import AppliedOutcome, Outcome, OutcomeKind
from .._types import ResourceRow
from .context import EngineContext
from .results import Completion, Judge

log = logging.getLogger("trio_delta.completer")

#: Called with the rows the written outcomes changed, as they are now.
OnApplied = Callable[[list[ResourceRow[Any]]], None]


class Completer:
    def __init__(self, ctx: EngineContext, *, buffer: int, on_applied: OnApplied) -> None:
        self._queue = ctx.store.queue
        self._clock = ctx.clock
        self._client_id = ctx.client_id
        self._batch_size = ctx.config.batch_size
        self._judge = Judge(ctx)
        self._on_applied = on_applied
        self.send, self._receive = trio.open_memory_channel[Completion](buffer)
        self.written = 0
        self.batches = 0

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Write outcomes until the send side is closed and everything is written."""
        task_status.started()
        async with self._receive:
            async for first in self._receive:
                batch = [first]
                while len(batch) < self._batch_size:
                    try:
                        batch.append(self._receive.receive_nowait())
                    except (trio.WouldBlock, trio.EndOfChannel):
                        break
                await self._write(batch)

    async def _write(self, batch: list[Completion]) -> None:
        outcomes = [self._judge.outcome(c) for c in batch]
        delay = 0.05
        while True:
            try:
                applied = await self._queue.complete(
                    outcomes, now=self._clock.now(), client_id=self._client_id
                )
                break
            except StoreError as exc:
                log.warning("writing %d outcomes failed, retrying in %.2fs: %s",
                            len(batch), delay, exc)
                await trio.sleep(delay)
                delay = min(delay * 2, 5.0)
        self.written += len(applied)
        self.batches += 1
        by_id = {o.id: (o, c) for o, c in zip(outcomes, batch, strict=True)}
        if len(applied) < len(batch):
            applied_ids = {a.id for a in applied}
            for o, c in by_id.values():
                if o.id not in applied_ids:
                    log.info(
                        "outcome %s for %s %r attempt %d not applied: the claim was lost "
                        "(rescued or handed back meanwhile)",
                        o.kind.value, c.resource.kind, c.resource.object_id, o.attempt,
                    )
        rows = [applied_row(*by_id[a.id], a) for a in applied if a.id in by_id]
        if rows:
            self._on_applied(rows)


def applied_row(outcome: Outcome, completion: Completion, applied: AppliedOutcome
                ) -> ResourceRow[Any]:
    """The claimed resource's row as it is after ``applied``."""
    resource = completion.resource
    errors = resource.errors
    if outcome.error is not None and outcome.kind is not OutcomeKind.HANDBACK:
        errors = (*errors, outcome.error)
    return dataclasses.replace(
        resource,
        state=applied.state,
        attempt=applied.attempt,
        scheduled_at=applied.scheduled_at,
        synced_at=applied.synced_at,
        errors=errors,
    )
