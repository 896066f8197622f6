"""Worker pools: run claimed resources through ``Controller.work``.

One pool per namespace with ``max_workers`` long-lived worker tasks reading
one bounded channel (no task spawned per resource). Every ``work`` call runs
in its own cancel scope with the work timeout as deadline; forced shutdown
cancels those scopes, and what was cancelled, or never started, is handed
back to the store instead of being failed.
"""

from __future__ import annotations

import logging
import math
import traceback
from collections.abc import Callable
from datetime import timedelta

import trio

from .._config import Config
from .._controllers import Controllers
from .._errors import ResourceDelete
from .._objects import decode_object
from .._store.base import Outcome, OutcomeKind, ResourceRecord
from .._types import AttemptError, Resource
from .clock import Clock
from .completer import Completion
from .rowqueue import RowQueue
from .slots import Slots

log = logging.getLogger("trio_delta.worker")

MAX_TRACE = 8000
MAX_MESSAGE = 2000


def clean_text(text: str, limit: int) -> str:
    """Text Postgres' jsonb can hold: no NUL, no lone surrogates, bounded."""
    text = text.replace("\x00", "\\x00")
    text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text if len(text) <= limit else text[: limit - 3] + "..."


def describe_exception(exc: BaseException) -> str:
    """``Type: message``, even for an exception whose ``__str__`` raises; for
    an exception group, followed by its first few exceptions (a group's own
    message says only how many it holds)."""
    try:
        text = str(exc)
    except Exception:
        text = "<exception str() failed>"
    described = f"{type(exc).__name__}: {text}"
    if isinstance(exc, BaseExceptionGroup):
        inner = [describe_exception(e) for e in exc.exceptions[:3]]  # pyright: ignore[reportUnknownVariableType,reportUnknownMemberType,reportUnknownArgumentType]
        described += " [" + "; ".join(inner) + (" ..." if len(exc.exceptions) > 3 else "") + "]"  # pyright: ignore[reportUnknownMemberType,reportUnknownArgumentType]
    return described


def format_trace(exc: BaseException) -> str:
    try:
        return "".join(traceback.format_exception(exc))
    except Exception:
        return describe_exception(exc)


def make_resource(record: ResourceRecord, obj: object) -> Resource[object]:
    # Positional (in ResourceRow's field order): keyword arguments cost ~2 us
    # more per resource, a noticeable share of a no-op work's cost.
    r = record
    return Resource(
        r.id, r.kind, r.object_id, r.namespace, r.state, r.attempt, r.max_attempts,
        obj, r.encoded_object, r.metadata, r.tags, r.errors, r.created_at,
        r.scheduled_at, r.attempted_at, r.attempted_by, r.synced_at,
    )


class _Worker:
    """One worker task's state, read by the pool's timeout watcher."""

    __slots__ = ("deadline", "record", "scope")

    def __init__(self) -> None:
        self.record: ResourceRecord | None = None  # in work now
        self.deadline = math.inf
        self.scope = trio.CancelScope()


class WorkerPool:
    def __init__(
        self,
        namespace: str,
        max_workers: int,
        *,
        controllers: Controllers,
        config: Config,
        clock: Clock,
        slots: Slots,
        completions: trio.MemorySendChannel[Completion],
        on_slot_free: Callable[[], None],
    ) -> None:
        self.namespace = namespace
        self.max_workers = max_workers
        self._controllers = controllers
        self._config = config
        self._clock = clock
        self._slots = slots
        self._completions = completions
        self._on_slot_free = on_slot_free
        # Claimed rows never wait here for long: the fetcher sends only as
        # many as there are free workers.
        self.rows = RowQueue(self._spawn)
        self._spawner: trio.Nursery | None = None
        self._workers: list[_Worker] = []
        self._watcher_idle = False
        self._watcher_wake = trio.Event()
        self._forced = False
        self.worked = 0

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Run until the row queue is closed and drained."""
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._watch_timeouts)
            async with trio.open_nursery() as workers:
                self._spawner = workers
                task_status.started()
                await self.rows.closed.wait()
            # Every worker has taken the last rows and returned.
            nursery.cancel_scope.cancel()  # the watcher

    def _spawn(self) -> bool:
        """Start one more worker task, unless the pool has all of them."""
        if self._spawner is None or len(self._workers) >= self.max_workers:
            return False
        worker = _Worker()
        self._workers.append(worker)
        self._spawner.start_soon(self._worker_loop, worker)
        return True

    def force(self) -> None:
        """Cancel running work and hand back whatever is left."""
        self._forced = True
        for worker in self._workers:
            if worker.record is not None:
                worker.scope.cancel()

    # Each work call needs a cancel scope (timeout, forced stop), but making
    # one with a deadline per resource cost ~7 us of Trio bookkeeping, a
    # noticeable share of a no-op resource's cost. Instead each worker task
    # keeps one scope (without deadline) across resources and makes a new
    # one only after it was cancelled, and one watcher task per pool sleeps
    # until the earliest running work's deadline and cancels that worker's
    # scope. Every work starts with the same timeout, so a newly started work
    # never has the earliest deadline unless nothing was running.

    async def _watch_timeouts(self) -> None:
        while True:
            now = trio.current_time()
            earliest = math.inf
            for worker in self._workers:
                if worker.record is None:
                    continue
                if worker.deadline <= now:
                    worker.scope.cancel()
                    worker.deadline = math.inf  # cancelled once
                else:
                    earliest = min(earliest, worker.deadline)
            if earliest == math.inf:
                self._watcher_idle = True
                await self._watcher_wake.wait()
                self._watcher_wake = trio.Event()
                self._watcher_idle = False
            else:
                await trio.sleep_until(earliest)

    async def _worker_loop(self, worker: _Worker) -> None:
        self.rows.started()
        record: ResourceRecord | None = None
        while True:
            worker.scope = scope = trio.CancelScope()
            failure: Exception | None = None
            try:
                with scope:
                    while True:
                        if record is None:
                            record = await self.rows.take()
                            if record is None:
                                return  # closed and drained
                        if scope.cancel_called:
                            break  # a late cancel, meant for a work that ended: new scope
                        worker.deadline = trio.current_time() + self._config.work_timeout
                        worker.record = record
                        if self._watcher_idle:
                            self._watcher_wake.set()
                        outcome = await self._work_one(record)
                        worker.record = None
                        done, record = record, None
                        await self._finish(done, outcome)
            except Exception as exc:
                # A work cancelled inside a nursery of its own can raise an
                # exception group of Cancelled and its own errors; the scope
                # takes the Cancelled and what is left lands here.
                if worker.record is None:
                    raise  # not from a work: ours, and a bug
                failure = exc
            interrupted, worker.record = worker.record, None
            if interrupted is not None:
                # Cancelled inside work (the timeout, or a forced stop), or
                # failed with what ``_work_one`` could not catch.
                record = None
                self.worked += 1
                await self._finish(interrupted, self._interrupted(interrupted, failure))

    async def _finish(self, record: ResourceRecord, outcome: Outcome) -> None:
        self._slots.release(record.namespace, record.kind)
        self._on_slot_free()
        completion = Completion(outcome, record)
        try:
            self._completions.send_nowait(completion)
        except trio.WouldBlock:
            # Shielded: a completion must reach the completer even while the
            # pool is torn down, or the claim would wait for the rescuer.
            with trio.CancelScope(shield=True):
                await self._completions.send(completion)

    def _handback(self, record: ResourceRecord) -> Outcome:
        return Outcome(record.id, record.attempt, record.hash, OutcomeKind.HANDBACK)

    def _interrupted(self, record: ResourceRecord, failure: Exception | None) -> Outcome:
        """The outcome of a work the worker's scope ended: handed back in a
        forced stop, else failed with ``failure``, or else timed out."""
        if self._forced:
            return self._handback(record)
        if failure is not None:
            return self._failure(record, failure, "")
        timeout = self._config.work_timeout
        return self._failure(record, TimeoutError(f"work timed out after {timeout:g}s"), "",
                             with_trace=False)

    async def _work_one(self, record: ResourceRecord) -> Outcome:
        """Run one work call; a cancellation (timeout, forced stop) propagates."""
        if self._forced:
            return self._handback(record)
        reg = self._controllers.get(record.kind)
        if reg is None:  # the fetcher only claims registered kinds
            return self._handback(record)
        try:
            obj = decode_object(record.encoded_object, reg.object_type)
        except Exception as exc:  # a stored object that no longer fits the type
            return self._failure(record, exc, "cannot decode the stored object: ")
        try:
            await reg.controller.work(make_resource(record, obj))
            self.worked += 1
        except ResourceDelete as exc:
            self.worked += 1
            log.info("%s %r deleted by work: %s", record.kind, record.object_id, exc.reason)
            return Outcome(record.id, record.attempt, record.hash, OutcomeKind.DELETED)
        except Exception as exc:
            self.worked += 1
            if self._forced:
                return self._handback(record)
            return self._failure(record, exc, "")
        return Outcome(record.id, record.attempt, record.hash, OutcomeKind.SYNCED)

    def _failure(self, record: ResourceRecord, exc: BaseException, prefix: str,
                 *, with_trace: bool = True) -> Outcome:
        now = self._clock.now()
        message = clean_text(prefix + describe_exception(exc), MAX_MESSAGE)
        trace = clean_text(format_trace(exc), MAX_TRACE) if with_trace else ""
        error = AttemptError(at=now, attempt=record.attempt, error=message, trace=trace)
        if record.attempt >= record.max_attempts:
            log.error("%s %r degraded after %d attempts: %s", record.kind, record.object_id,
                      record.attempt, message)
            return Outcome(record.id, record.attempt, record.hash, OutcomeKind.DEGRADED,
                           error=error)
        delay = self._retry_delay(record)
        log.warning("%s %r attempt %d/%d failed, retry in %.3gs: %s", record.kind,
                    record.object_id, record.attempt, record.max_attempts, delay, message)
        return Outcome(record.id, record.attempt, record.hash, OutcomeKind.FAILED, error=error,
                       retry_at=now + timedelta(seconds=delay))

    def _retry_delay(self, record: ResourceRecord) -> float:
        try:
            delay = float(self._config.retry_policy(record.attempt))
        except Exception:
            log.exception("retry_policy(%d) raised; retrying in 1s", record.attempt)
            return 1.0
        if not delay >= 0:  # also catches NaN
            log.error("retry_policy(%d) returned %r; retrying in 1s", record.attempt, delay)
            return 1.0
        return min(delay, 365 * 24 * 3600.0)
