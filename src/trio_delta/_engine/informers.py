"""Informers: each kind's ``Controller.inform`` on its schedule and on demand.

A run is claimed through the kind's controller row (``next_inform_at`` plus a
lease), so exactly one client runs a kind's informer at a time and the
schedule survives restarts. Objects flow from the informer through a bounded
channel to a writer that upserts them in batches: when the database is slower
than the source, ``send()`` blocks and memory stays flat.

The cursor (``InformOptions.after``) is the newest ``created_at()`` of the
objects a run yielded, or the run's start when they have none; it advances
only when a run completes. A failed or timed-out run keeps what it already
sent, leaves the cursor alone and runs again at its next scheduled time.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import trio

from .._controllers import Registration
from .._errors import ObjectError, StoreError
from .._informing import stale_check
from .._logs import Throttled, get_logger
from .._objects import PreparedObject, prepare_object
from .._observer import InformerFinish
from .._store.params import InformClaim, InformLease, InformRunEnd, UpsertParams
from .._types import InformOptions
from .context import EngineContext
from .pauses import Pauses
from .results import MAX_MESSAGE, clean_text, describe_exception

log = get_logger("trio_delta.informer")

#: Extra lease beyond ``inform_timeout``, so a slow final batch is covered.
LEASE_GRACE = 30.0
#: Batches an informer may send ahead of the writer.
BUFFERED_BATCHES = 2
#: How often the writer looks for more objects while a batch is not full
#: (seconds; the flush deadline, when sooner, comes first).
LOOK_INTERVAL = 0.001
#: Write attempts for one batch before the run is failed.
WRITE_ATTEMPTS = 4


class RunStats:
    def __init__(self) -> None:
        self.sent = 0
        self.written = 0
        self.rejected = 0
        self.newest: datetime | None = None


class Informers:
    def __init__(
        self, ctx: EngineContext, *, on_written: Callable[[set[str]], None], pauses: Pauses
    ) -> None:
        # Retries of one failure: not a warning each (per client: a
        # throttle shared across clients would hide one's first warning).
        self._storm = Throttled(log)
        self._observer = ctx.observer
        self._tracer = ctx.tracer
        self._control = ctx.store.control
        self._queue = ctx.store.queue
        self._notifications_reliable = ctx.notified
        self._clock = ctx.clock
        self._client_id = ctx.client_id
        self._controllers = ctx.controllers
        self._config = ctx.config
        self._on_written = on_written
        self._pauses = pauses
        self._wakes: dict[str, trio.Event] = {reg.kind: trio.Event() for reg in ctx.controllers}
        self._stopping = False
        self._stopped = trio.Event()
        self.runs = 0
        self.failures = 0

    def interval(self, reg: Registration) -> float:
        value = reg.settings.inform_interval
        return self._config.inform_interval if value is None else value

    def wake_all(self) -> None:
        """Look at every kind again (the pauses changed)."""
        for kind in list(self._wakes):
            self.wake(kind)

    def wake(self, kind: str) -> None:
        event = self._wakes.get(kind)
        if event is not None:
            event.set()

    def stop(self) -> None:
        """Graceful phase: start no new runs (a running one may finish)."""
        self._stopping = True
        self._stopped.set()
        for event in self._wakes.values():
            event.set()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        # Ready at once: registering the kinds may wait (a locked controllers
        # row, a database that refuses writes for now), and a client must
        # start and work resources meanwhile; the informers follow when it
        # lands.
        task_status.started()
        if not await self._register():
            return
        async with trio.open_nursery() as nursery:
            for reg in self._controllers:
                nursery.start_soon(self._kind_loop, reg)

    async def _register(self) -> bool:
        """Create the kinds' controller rows, retrying with backoff; False
        when the client stops first."""
        now = self._clock.now()
        schedule = {
            reg.kind: (now if self.interval(reg) >= 0 else None) for reg in self._controllers
        }
        if not schedule:
            return False
        delay = 0.1
        while not self._stopping:
            try:
                await self._control.ensure_controllers(schedule, now=now)
                return True
            except StoreError as exc:
                self._storm.warning(
                    "registering informers failed, retrying in %.1fs: %s", delay, exc
                )
            with trio.move_on_after(delay):
                await self._stopped.wait()
            delay = min(delay * 2, 10.0)
        return False

    async def _kind_loop(self, reg: Registration) -> None:
        delay = 0.1
        while not self._stopping:
            self._wakes[reg.kind] = trio.Event()
            if self._pauses.covers(reg.kind, None):
                # Paused: no run until a resume wakes us (requests wait).
                await self._wakes[reg.kind].wait()
                continue
            now = self._clock.now()
            lease_until = now + timedelta(seconds=self._config.inform_timeout + LEASE_GRACE)
            try:
                claim = await self._control.claim_inform(
                    InformLease(reg.kind, self._client_id, now, lease_until)
                )
                if claim is not None:
                    if self._tracer is None:
                        await self._run_once(reg, claim)
                    else:
                        with self._tracer.trace_informer_run(reg.kind) as finish:
                            await self._run_once(reg, claim, finish)
                    continue
                deadline = await self._next_check(reg.kind)
                delay = 0.1
            except StoreError as exc:
                self._storm.warning(
                    "informer %s: database error, retrying in %.1fs: %s",
                    reg.kind,
                    delay,
                    exc,
                    extra={"kind": reg.kind},
                )
                deadline = trio.current_time() + delay
                delay = min(delay * 2, 10.0)
            with trio.move_on_at(deadline):
                await self._wakes[reg.kind].wait()

    async def _next_check(self, kind: str) -> float:
        """When to look again: the schedule, a lease's end, or a poll."""
        poll = trio.current_time() + max(5 * self._config.poll_interval, 1.0)
        if self._notifications_reliable:
            # Requests arrive as notifications, and the schedule and leases
            # are read below: with none lost, a poll finds nothing new.
            poll = math.inf
        state = await self._control.get_controller(kind)
        if state is None:
            return poll
        due = math.inf
        if state.requested_at is not None or state.next_inform_at is not None:
            due = (
                self._clock.trio_time(state.next_inform_at)
                if state.next_inform_at is not None
                else trio.current_time()
            )
            if state.requested_at is not None:
                due = trio.current_time()
            if state.lease_expires_at is not None:
                due = max(due, self._clock.trio_time(state.lease_expires_at))
        # Never sooner than a moment from now (a lease about to be released
        # arrives with a NOTIFY-free finish), never later than the poll.
        return min(max(due, trio.current_time() + 0.01), poll)

    def _options(self, claim: InformClaim) -> InformOptions:
        extra = claim.options or {}
        labels: dict[str, Any] = dict(extra.get("labels") or {})
        return InformOptions(
            after=None if claim.process_existing else claim.cursor,
            labels={str(k): str(v) for k, v in labels.items()},
            limit=extra.get("limit"),
            order_by=extra.get("order_by"),
            process_existing=claim.process_existing,
        )

    async def _run_once(
        self, reg: Registration, claim: InformClaim, finish: InformerFinish | None = None
    ) -> None:
        """One informer run; ``finish``, if given, is told how it ended (the
        run's trace span)."""
        started = self._clock.now()
        stats = RunStats()
        error: str | None = None
        send, receive = trio.open_memory_channel[Any](BUFFERED_BATCHES * self._config.batch_size)
        # Set once the informer has returned: the writer, which looks for
        # objects only now and then, then finishes the run without delay.
        sent = trio.Event()
        completed = False
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._writer, reg, claim, receive, sent, stats)
                with trio.move_on_after(self._config.inform_timeout) as timeout:
                    try:
                        await reg.controller.inform(self._options(claim), send)
                    except Exception as exc:
                        error = clean_text(describe_exception(exc), MAX_MESSAGE)
                        log.exception(
                            "informer %s failed after %d objects",
                            reg.kind,
                            stats.sent,
                            extra={"kind": reg.kind},
                        )
                    finally:
                        send.close()
                        sent.set()
                if timeout.cancelled_caught:
                    error = f"informer timed out after {self._config.inform_timeout:g}s"
                    log.error(
                        "informer %s timed out after %gs (%d objects sent)",
                        reg.kind,
                        self._config.inform_timeout,
                        stats.sent,
                        extra={"kind": reg.kind},
                    )
            completed = True
        except* StoreError as group:
            error = f"writing informed objects failed: {group.exceptions[0]}"
            log.error("informer %s: %s", reg.kind, error, extra={"kind": reg.kind})
            completed = True
        finally:
            if not completed:
                error = "informer run cancelled (client stopping)"
            with trio.CancelScope(shield=True) as release:
                release.deadline = trio.current_time() + 5.0
                await self._finish(reg, claim, started, stats, error)
            if finish is not None:
                finish(stats.written, error)

    async def _finish(
        self,
        reg: Registration,
        claim: InformClaim,
        started: datetime,
        stats: RunStats,
        error: str | None,
    ) -> None:
        interval = self.interval(reg)
        now = self._clock.now()
        next_at = None
        if interval >= 0:
            jitter = self._config.random.uniform(0, self._config.inform_jitter)
            next_at = now + timedelta(seconds=interval + jitter)
        cursor = None
        if error is None and not claim.process_existing:
            cursor = stats.newest if stats.newest is not None else started
        if error is None:
            log.info(
                "informer %s: %d objects, %d written, %d rejected",
                reg.kind,
                stats.sent,
                stats.written,
                stats.rejected,
                extra={"kind": reg.kind},
            )
        try:
            await self._control.finish_inform(
                InformRunEnd(
                    reg.kind,
                    self._client_id,
                    now,
                    cursor=cursor,
                    reschedule=interval >= 0,
                    next_inform_at=next_at,
                    requested_at=claim.requested_at,
                    error=error,
                )
            )
        except StoreError as exc:
            log.error(
                "informer %s: could not record the run (the lease expires by itself): %s",
                reg.kind,
                exc,
                extra={"kind": reg.kind},
            )
        finally:
            # Counted once its end is recorded, so a reader who sees the count
            # also sees the run's row: a run still going is not one yet.
            self.runs += 1
            if error is not None:
                self.failures += 1
            if self._observer is not None:
                seconds = (now - started).total_seconds()
                self._observer.informer_run(reg.kind, error is None, seconds, stats.written)

    async def _writer(
        self,
        reg: Registration,
        claim: InformClaim,
        receive: trio.MemoryReceiveChannel[Any],
        sent: trio.Event,
        stats: RunStats,
    ) -> None:
        """Two stages, so the next batch is validated and encoded while the
        previous one is in flight to the database."""
        prepared_send, prepared_receive = trio.open_memory_channel[list[PreparedObject]](1)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._upsert_stage, reg, claim, prepared_receive, stats)
            async with prepared_send, receive:
                while (batch := await self._collect(receive, sent)) is not None:
                    items = self._prepare(reg, batch, stats)
                    if items:
                        await prepared_send.send(items)

    async def _collect(
        self, receive: trio.MemoryReceiveChannel[Any], sent: trio.Event
    ) -> list[Any] | None:
        """The next batch: what is waiting, plus what arrives within
        ``flush_interval``, up to ``batch_size``; None when the run is over
        (``sent``: the informer has returned, nothing more will come)."""
        try:
            batch = [await receive.receive()]
        except trio.EndOfChannel:
            return None
        # Waiting in receive() whenever the buffer runs dry would wake this
        # task once per object a fast informer sends: two task switches an
        # object, most of what an informer run cost. Looking again every
        # millisecond instead (about the event loop's timer resolution on
        # Linux) lets the informer fill the buffer in between (it holds two
        # batches): a batch that fills is noticed within a millisecond, and
        # an informer held by a full buffer waits no longer than that.
        deadline = trio.current_time() + self._config.flush_interval
        while len(batch) < self._config.batch_size:
            try:
                batch.append(receive.receive_nowait())
                continue
            except trio.WouldBlock:
                pass
            except trio.EndOfChannel:
                break
            now = trio.current_time()
            if now >= deadline or sent.is_set():
                break
            with trio.move_on_at(min(deadline, now + LOOK_INTERVAL)):
                await sent.wait()
        return batch

    def _prepare(
        self, reg: Registration, batch: list[Any], stats: RunStats
    ) -> list[PreparedObject]:
        stats.sent += len(batch)
        items: list[PreparedObject] = []
        for obj in batch:
            try:
                if not isinstance(obj, reg.object_type):
                    raise ObjectError(
                        f"expected {reg.object_type.__name__}, got {type(obj).__name__}"
                    )
                item = prepare_object(obj, None, default_max_attempts=self._config.max_attempts)
            except ObjectError as exc:
                stats.rejected += 1
                log.warning(
                    "informer %s: object rejected: %s", reg.kind, exc, extra={"kind": reg.kind}
                )
                continue
            if item.created_at is not None and (
                stats.newest is None or item.created_at > stats.newest
            ):
                stats.newest = item.created_at
            items.append(item)
        return items

    async def _upsert_stage(
        self,
        reg: Registration,
        claim: InformClaim,
        prepared: trio.MemoryReceiveChannel[list[PreparedObject]],
        stats: RunStats,
    ) -> None:
        is_stale = stale_check([reg.object_type], lambda kind: reg.object_type)
        async with prepared:
            async for items in prepared:
                delay = 0.1
                for attempt in range(1, WRITE_ATTEMPTS + 1):
                    try:
                        await self._queue.upsert_quiet(
                            items, UpsertParams(self._clock.now(), claim.process_existing, is_stale)
                        )
                        break
                    except StoreError as exc:
                        if attempt == WRITE_ATTEMPTS:
                            raise
                        self._storm.warning(
                            "informer %s: writing %d objects failed, retrying: %s",
                            reg.kind,
                            len(items),
                            exc,
                            extra={"kind": reg.kind},
                        )
                        await trio.sleep(delay)
                        delay *= 4
                stats.written += len(items)
                self._on_written({item.namespace for item in items})
