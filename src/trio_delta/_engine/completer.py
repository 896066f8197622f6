"""The completer: writes work outcomes back to the store in batches.

Workers hand outcomes over a bounded channel (a slow database slows the
workers rather than growing memory). The completer takes everything already
waiting, up to ``batch_size``, and writes it in one statement: under load
batches fill themselves while the previous write is in flight, and an idle
system pays no batching delay. A failed write is retried with backoff; the
store applies outcomes idempotently (guarded by the claimed attempt), so a
retry after an unknown result cannot double-apply.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from dataclasses import dataclass

import trio

from .._errors import StoreError
from .._store.base import AppliedOutcome, Outcome, OutcomeKind, ResourceRecord, Store
from .clock import Clock

log = logging.getLogger("trio_delta.completer")


@dataclass(slots=True)  # one per worked resource: not frozen, cheaper to build
class Completion:
    outcome: Outcome
    record: ResourceRecord
    """The claimed row, for events."""


OnApplied = Callable[[list[tuple[Completion, AppliedOutcome]]], None]


class Completer:
    def __init__(
        self,
        store: Store,
        clock: Clock,
        client_id: str,
        *,
        batch_size: int,
        buffer: int,
        on_applied: OnApplied,
    ) -> None:
        self._store = store
        self._clock = clock
        self._client_id = client_id
        self._batch_size = batch_size
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
        delay = 0.05
        while True:
            try:
                applied = await self._store.complete(
                    [c.outcome for c in batch], now=self._clock.now(), client_id=self._client_id
                )
                break
            except StoreError as exc:
                log.warning("writing %d outcomes failed, retrying in %.2fs: %s",
                            len(batch), delay, exc)
                await trio.sleep(delay)
                delay = min(delay * 2, 5.0)
        self.written += len(applied)
        self.batches += 1
        if len(applied) < len(batch):
            applied_ids = {a.id for a in applied}
            for c in batch:
                if c.outcome.id not in applied_ids:
                    log.info(
                        "outcome %s for %s %r attempt %d not applied: the claim was lost "
                        "(rescued or handed back meanwhile)",
                        c.outcome.kind.value, c.record.kind, c.record.object_id,
                        c.outcome.attempt,
                    )
        by_id = {c.outcome.id: c for c in batch}
        pairs = [(by_id[a.id], a) for a in applied if a.id in by_id]
        if pairs:
            self._on_applied(pairs)


def applied_record(completion: Completion, applied: AppliedOutcome) -> ResourceRecord:
    """The claimed record as it is after ``applied``."""
    rec = completion.record
    errors = rec.errors
    outcome = completion.outcome
    if outcome.error is not None and outcome.kind is not OutcomeKind.HANDBACK:
        errors = (*errors, outcome.error)
    return dataclasses.replace(
        rec,
        state=applied.state,
        attempt=applied.attempt,
        scheduled_at=applied.scheduled_at,
        synced_at=applied.synced_at,
        errors=errors,
    )
