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

An outcome whose row another transaction holds (a user's open transaction
that informed the object again, a ``SELECT ... FOR UPDATE``) is not waited
for: the store skips it, the rest of the batch is written, and the completer
keeps it aside and tries again with backoff, in later batches. One held row
thus never stops the outcomes of the others, nor the workers behind them.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any

import trio

from .._errors import StoreError
from .._logs import Throttled, get_logger, resource_fields
from .._store.params import AppliedOutcome, Completed, Outcome, OutcomeKind
from .._types import EventCategory, ResourceRow, ResourceState
from .context import EngineContext
from .results import WORK_OUTCOME_NAMES, Completion, Judge

log = get_logger("trio_delta.completer")

#: Called with the rows the written outcomes changed, as they are now.
OnApplied = Callable[[list[tuple[ResourceRow[Any], EventCategory]]], None]

#: First and longest wait before an outcome whose row was held is tried again.
HELD_RETRY_FIRST = 0.05
HELD_RETRY_MAX = 2.0


@dataclasses.dataclass(slots=True)
class _Held:
    """An outcome whose row another transaction held at the last try."""

    outcome: Outcome
    completion: Completion
    since: float  # trio time of the first try that found the row held
    retry_at: float
    delay: float
    reported: bool = False


Pending = tuple[Outcome, Completion]


class Completer:
    def __init__(
        self,
        ctx: EngineContext,
        *,
        buffer: int,
        on_applied: OnApplied,
        wants_rows: Callable[[], bool],
    ) -> None:
        # Retries of one failure: not a warning each (per client: a
        # throttle shared across clients would hide one's first warning).
        self._storm = Throttled(log)
        self._queue = ctx.store.queue
        self._clock = ctx.clock
        self._client_id = ctx.client_id
        self._batch_size = ctx.config.batch_size
        self._report_after = ctx.config.lock_timeout
        self._judge = Judge(ctx)
        self._observer = ctx.observer
        self._on_applied = on_applied
        self._wants_rows = wants_rows
        self.send, self._receive = trio.open_memory_channel[Completion](buffer)
        self._held: dict[int, _Held] = {}
        self.written = 0
        self.batches = 0
        self.last_written_at: float | None = None  # trio time of the last batch written
        self._in_hand = False  # outcomes taken from the channel and not yet written
        self.received = 0  # completions taken from the channel

    def idle(self, sent: int) -> bool:
        """Whether every completion handed over is written (or dropped),
        ``sent`` being how many the workers have sent or are sending. (A
        channel hands an item to a receiver already waiting without
        buffering it: between the two tasks it is in neither count.)"""
        return sent == self.received and not self._in_hand and not self._held

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Write outcomes until the send side is closed and everything is written."""
        task_status.started()
        receiving = True
        async with self._receive:
            while receiving or self._held:
                batch = self._due()
                if not batch:
                    # Nothing held is due: wait for a completion, or until
                    # the first held outcome is.
                    with trio.move_on_at(self._next_retry()):
                        if receiving:
                            try:
                                batch.append(self._pending(await self._receive.receive()))
                            except trio.EndOfChannel:
                                receiving = False
                        else:
                            await trio.sleep_forever()
                self._in_hand = bool(batch)
                if receiving:
                    receiving = await self._fill(batch)
                if batch:
                    await self._write(batch)
                self._in_hand = False

    async def _fill(self, batch: list[Pending]) -> bool:
        """Add completions to ``batch`` while they keep coming, up to a batch;
        False once the channel is closed and empty.

        Workers yield to the scheduler after each row they take, so the
        completer runs between their rows: taking only what had arrived
        then wrote batches of a few rows, a round trip each. Instead, while
        the last scheduler pass brought completions, give the workers
        another pass (a few microseconds); when one brings none, the
        workers are waiting on their work, and the batch is written.
        """
        yielded = False
        while len(batch) < self._batch_size:
            before = len(batch)
            while len(batch) < self._batch_size:
                try:
                    batch.append(self._pending(self._receive.receive_nowait()))
                except trio.WouldBlock:
                    break
                except trio.EndOfChannel:
                    return False
            if yielded and len(batch) == before:
                break  # a pass with nothing new: write what there is
            # Shielded: what is taken from the channel must be written.
            await trio.lowlevel.cancel_shielded_checkpoint()
            yielded = True
        return True

    def _pending(self, completion: Completion) -> Pending:
        self.received += 1
        outcome = self._judge.outcome(completion)
        if self._observer is not None:
            resource = completion.resource
            name = "cancelled" if completion.cancelled else WORK_OUTCOME_NAMES[outcome.kind]
            self._observer.work_ended(resource.kind, resource.namespace, name, completion.seconds)
        return (outcome, completion)

    def _next_retry(self) -> float:
        return min((h.retry_at for h in self._held.values()), default=math.inf)

    def _due(self) -> list[Pending]:
        """Held outcomes due for another try, up to a batch."""
        now = trio.current_time()
        due = [h for h in self._held.values() if h.retry_at <= now][: self._batch_size]
        return [(h.outcome, h.completion) for h in due]

    async def _write(self, batch: list[Pending]) -> None:
        outcomes = [o for o, _ in batch]
        delay = 0.05
        while True:
            try:
                started = trio.current_time()
                done = await self._queue.complete(
                    outcomes, now=self._clock.now(), client_id=self._client_id
                )
                self.last_written_at = trio.current_time()
                if self._observer is not None:
                    self._observer.outcomes_written(len(outcomes), self.last_written_at - started)
                break
            except StoreError as exc:
                self._storm.warning(
                    "writing %d outcomes failed, retrying in %.2fs: %s", len(batch), delay, exc
                )
                await trio.sleep(delay)
                delay = min(delay * 2, 5.0)
        self.written += len(done.applied)
        self.batches += 1
        if len(done.applied) < len(batch):
            self._sort_out(batch, done)
        if self._held:
            for a in done.applied:
                self._release(a.id)
        if done.applied and self._wants_rows():
            # Rows for events only: a replace() per outcome was 8 % of a
            # drain's time when nobody listened.
            by_id = {o.id: (o, c) for o, c in batch}
            rows: list[tuple[ResourceRow[Any], EventCategory]] = []
            for a in done.applied:
                if a.id in by_id:
                    outcome, completion = by_id[a.id]
                    category = event_category(outcome, completion, a)
                    if category is not None:
                        rows.append((applied_row(outcome, completion, a), category))
            if rows:
                self._on_applied(rows)

    def _sort_out(self, batch: list[Pending], done: Completed) -> None:
        """Keep aside the outcomes of ``batch`` whose rows were held; forget
        those whose claim was lost."""
        by_id = {o.id: (o, c) for o, c in batch}
        locked = set(done.locked)
        for row_id in locked:
            self._hold(*by_id[row_id])
        if len(done.applied) + len(locked) < len(by_id):
            applied_ids = {a.id for a in done.applied}
            for o, c in by_id.values():
                if o.id not in applied_ids and o.id not in locked:
                    self._held.pop(o.id, None)
                    log.info(
                        "outcome %s for %s %r attempt %d not applied: the claim was lost "
                        "(rescued or handed back meanwhile)",
                        o.kind.value,
                        c.resource.kind,
                        c.resource.object_id,
                        o.attempt,
                        extra=resource_fields(c.resource),
                    )

    def _hold(self, outcome: Outcome, completion: Completion) -> None:
        now = trio.current_time()
        held = self._held.get(outcome.id)
        if held is None:
            held = self._held[outcome.id] = _Held(
                outcome, completion, since=now, retry_at=now, delay=HELD_RETRY_FIRST
            )
        else:
            held.delay = min(held.delay * 2, HELD_RETRY_MAX)
        held.retry_at = now + held.delay
        waited = now - held.since
        if not held.reported and waited >= self._report_after:
            held.reported = True
            resource = completion.resource
            log.warning(
                "%s %r has been locked by another transaction for %.1fs: its %s outcome "
                "waits (other outcomes are written meanwhile) and is retried until the "
                "lock is released",
                resource.kind,
                resource.object_id,
                waited,
                outcome.kind.value,
                extra=resource_fields(resource),
            )

    def _release(self, row_id: int) -> None:
        held = self._held.pop(row_id, None)
        if held is not None and held.reported:
            resource = held.completion.resource
            log.info(
                "%s %r: the lock was released; its %s outcome was written after waiting %.1fs",
                resource.kind,
                resource.object_id,
                held.outcome.kind.value,
                trio.current_time() - held.since,
                extra=resource_fields(resource),
            )


_CATEGORY = {
    ResourceState.SYNCED: EventCategory.OBJECT_SYNCED,
    ResourceState.FAILED: EventCategory.OBJECT_FAILED,
    ResourceState.DEGRADED: EventCategory.OBJECT_FAILED,
    ResourceState.DELETED: EventCategory.OBJECT_DELETED,
}


def event_category(
    outcome: Outcome, completion: Completion, applied: AppliedOutcome
) -> EventCategory | None:
    """What subscribers hear of ``applied``: by the state it left, and a
    requeue (due again, but synced now) as synced."""
    if (
        outcome.kind is OutcomeKind.REQUEUE
        and applied.synced_at is not None
        and applied.synced_at != completion.resource.synced_at
    ):
        return EventCategory.OBJECT_SYNCED
    return _CATEGORY.get(applied.state)


def applied_row(
    outcome: Outcome, completion: Completion, applied: AppliedOutcome
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
