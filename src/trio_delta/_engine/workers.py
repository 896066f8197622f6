"""Worker pools: run claimed resources through ``Controller.work``.

One pool per namespace, its worker tasks started on demand up to
``max_workers`` and kept (no task spawned per resource). Each work's result
is captured as an :mod:`outcome` and handed to the outcome writer; a forced
stop cancels running work, and what was cancelled, or never started, is
handed back to the store instead of being failed. Work that ignores the
cancel is handed back without waiting for it (:meth:`WorkerPool.abandon`).

A BaseException from a work that is not the engine's cancellation
(KeyboardInterrupt, SystemExit, the user's own) fails that attempt and is
reported to ``on_fatal``, which stops the client; the pool itself never
raises it, so the other rows can still be handed back and every outcome
written. A ``trio.Cancelled`` raised while nothing had cancelled the work
only fails its attempt.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import outcome
import trio

from .._logs import get_logger, resource_fields
from .._observer import Observer
from .._types import Resource
from .context import EngineContext
from .results import (
    RETURNED_NONE,
    Completion,
    NoAsyncioLoop,
    StrayCancelled,
    Undecodable,
    describe_exception,
    finish_span,
    first_fatal,
    interrupted_result,
    needed_asyncio,
    without_cancelled,
    without_this_frame,
)
from .rowqueue import RowQueue
from .slots import Slots

log = get_logger("trio_delta.worker")


def _cancelled_around_us() -> bool:
    """Whether the running task is cancelled now: the engine cancelled its
    work (timeout, forced stop) or something around the pool did."""
    return trio.current_effective_deadline() == -math.inf


class _Worker:
    """One worker task's state, read by the pool's timeout watcher."""

    __slots__ = (
        "cancelled",
        "deadline",
        "handed_back",
        "resource",
        "scope",
        "scope_cancelled",
        "started",
        "timeout",
    )

    def __init__(self) -> None:
        self.resource: Resource[Any] | None = None  # in work now
        self.handed_back = False  # its row was given up while the work ran on
        self.deadline = math.inf
        self.timeout = 0.0  # of the work in hand
        self.started = 0.0  # when the work in hand began (trio time)
        self.cancelled = False  # its row was deleted or cancelled while it ran
        self.scope = trio.CancelScope()
        # ``scope.cancel_called`` reads the clock (for a deadline this scope
        # never has): the worker's loop asks this instead, once per row.
        self.scope_cancelled = False

    def cancel(self) -> None:
        self.scope_cancelled = True
        self.scope.cancel()


class WorkerPool:
    def __init__(
        self,
        ctx: EngineContext,
        namespace: str,
        max_workers: int,
        *,
        slots: Slots,
        completions: trio.MemorySendChannel[Completion],
        on_slot_free: Callable[[], None],
        on_fatal: Callable[[BaseException], None],
    ) -> None:
        self.namespace = namespace
        self.max_workers = max_workers
        self._controllers = ctx.controllers
        self._work_timeout = ctx.config.work_timeout
        self._timeouts = {
            reg.kind: reg.settings.work_timeout or ctx.config.work_timeout
            for reg in ctx.controllers
        }
        self._longest = max(self._timeouts.values(), default=self._work_timeout)
        # One timeout for every kind: a work that starts later ends its time
        # later, and no start needs to wake the watcher (see below).
        self._uniform = all(t == self._work_timeout for t in self._timeouts.values())
        self._watch_until = math.inf
        self._watch_scope = trio.CancelScope()
        self._asyncio = ctx.config.asyncio
        self._observer = ctx.observer
        self._tracer = ctx.tracer
        self._slots = slots
        self._completions = completions
        self._on_slot_free = on_slot_free
        self._on_fatal = on_fatal
        # Claimed rows never wait here for long: the fetcher sends only as
        # many as there are free workers.
        self.rows = RowQueue(self._spawn)
        self._spawner: trio.Nursery | None = None
        self._workers: list[_Worker] = []
        self._forced = False
        # The run's clock, read directly: trio.current_time() reaches it
        # through two more calls, and a worker reads it twice a row.
        self._now: Callable[[], float] = trio.current_time
        self.worked = 0
        self.completions_sent = 0  # sent, or being sent, to the outcome writer

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Run until the row queue is closed and drained."""
        self._now = trio.lowlevel.current_clock().current_time
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

    def claimed(self) -> list[Resource[Any]]:
        """The rows this pool holds: at work, and waiting for a worker."""
        running = [w.resource for w in self._workers if w.resource is not None]
        return [*running, *self.rows.queued()]

    def cancel_work(self, resource_id: int) -> None:
        """Cancel the work running on row ``resource_id``, or drop the row
        if it waits for a worker (claimed ahead: ``prefetch``); the row was
        deleted or cancelled, and nothing its work wrote could apply."""
        queued = self.rows.remove(resource_id)
        if queued is not None:
            log.info(
                "%s %r: deleted while claimed ahead; dropped before its work started",
                queued.kind,
                queued.object_id,
                extra=resource_fields(queued),
            )
            self._slots.release(queued.namespace, queued.kind)
            self._on_slot_free()
            return
        for worker in self._workers:
            resource = worker.resource
            if resource is not None and resource.id == resource_id and not worker.cancelled:
                log.info(
                    "%s %r: cancelled while its work ran (the resource was deleted)",
                    resource.kind,
                    resource.object_id,
                    extra=resource_fields(resource),
                )
                worker.cancelled = True
                worker.cancel()

    def force(self) -> None:
        """Cancel running work and hand back whatever is left."""
        self._forced = True
        for worker in self._workers:
            if worker.resource is not None:
                worker.cancel()

    def in_work(self) -> list[Resource[Any]]:
        """The resources whose work has not ended, handed back or not."""
        return [w.resource for w in self._workers if w.resource is not None]

    async def abandon(self) -> tuple[list[Resource[Any]], int]:
        """Hand back the rows of works still running after :meth:`force`,
        and the rows queued for workers; returns the former and how many
        of the latter.

        Trio cannot end a work that ignores cancellation (a blocking call in
        a thread that may not be abandoned, a shielded wait), and the client
        cannot exit before it does; its row must not wait for that, or a
        process killed meanwhile leaves it to the rescuer. Whatever such a
        work returns later is dropped (and the store would refuse it: the
        row is no longer this claim's). Queued rows may be waiting for just
        those workers: no new worker starts once the stop has begun.
        """
        given_up: list[Resource[Any]] = []
        for worker in self._workers:
            resource = worker.resource
            if resource is None or worker.handed_back:
                continue
            worker.handed_back = True
            given_up.append(resource)
            await self._finish(resource, None, trio.current_time() - worker.started)
        queued = self.rows.drain()
        for resource in queued:
            await self._finish(resource, None, 0.0)
        return given_up, len(queued)

    # Each work call needs a cancel scope (timeout, forced stop), but making
    # one with a deadline per resource cost ~7 us of Trio bookkeeping, a
    # noticeable share of a no-op resource's cost. Instead each worker task
    # keeps one scope (without deadline) across resources and makes a new
    # one only after it was cancelled, and one watcher task per pool sleeps
    # until the earliest running work's deadline and cancels that worker's
    # scope. Every work starts with the same timeout, so a work that starts
    # later has a later deadline than ``now + timeout``: the watcher sleeps
    # until then at the latest, and no work start ever needs to wake it
    # (waking it was a task switch for every other row of a short-work drain).

    async def _watch_timeouts(self) -> None:
        while True:
            now = trio.current_time()
            earliest = now + self._longest
            for worker in self._workers:
                if worker.resource is None:
                    continue
                if worker.deadline <= now:
                    worker.cancel()
                    worker.deadline = math.inf  # cancelled once
                else:
                    earliest = min(earliest, worker.deadline)
            self._watch_until = earliest
            with trio.CancelScope() as self._watch_scope:
                await trio.sleep_until(earliest)

    def _start_clock(self, worker: _Worker, kind: str) -> None:
        """Set the deadline of the work ``worker`` starts on a row of ``kind``.
        With kinds of different timeouts, a work that starts now may end its
        time before the watcher's next look: then it looks again now."""
        worker.timeout = self._timeouts.get(kind, self._work_timeout)
        worker.deadline = worker.started + worker.timeout
        if worker.deadline < self._watch_until:
            self._watch_until = worker.deadline
            self._watch_scope.cancel()

    async def _worker_loop(self, worker: _Worker) -> None:
        self.rows.started()
        take = self.rows.take
        now = self._now
        resource: Resource[Any] | None = None
        # The loop is the path every resource takes: what it calls per row
        # is kept to what must happen (a no-op resource costs ~20 us in all).
        while True:
            worker.scope = scope = trio.CancelScope()
            worker.scope_cancelled = False
            failure: BaseException | None = None
            try:
                with scope:
                    while True:
                        if resource is None:
                            resource = await take()
                            if resource is None:
                                return  # closed and drained
                        if worker.scope_cancelled:
                            break  # a late cancel, meant for a work that ended: new scope
                        worker.started = now()
                        if self._uniform:
                            worker.timeout = self._work_timeout
                            worker.deadline = worker.started + self._work_timeout
                        else:
                            self._start_clock(worker, resource.kind)
                        worker.cancelled = False
                        worker.resource = resource
                        if self._observer is not None:
                            self._observer.work_started(resource.kind, resource.namespace)
                        if self._tracer is None:
                            result = await self._work_one(resource)
                        else:
                            result = await self._traced_work(self._tracer, resource, worker)
                        worker.resource = None
                        done, resource = resource, None
                        if not (worker.handed_back and self._handed_back(worker, done)):
                            waiting = self._complete(done, result, now() - worker.started)
                            if waiting is not None:
                                await self._send_waiting(waiting)
            except BaseException as exc:
                # A work cancelled inside a nursery of its own can raise an
                # exception group of Cancelled and its own errors; the scope
                # takes the Cancelled and what is left lands here, as does a
                # cancel of the whole pool and a BaseException raised while
                # the work was being cancelled.
                if worker.resource is None:
                    raise  # not from a work: ours (a bug), or the pool cancelled between works
                failure = exc
            interrupted, worker.resource = worker.resource, None
            if interrupted is not None:
                # Cancelled inside work (the timeout, a forced stop, the pool
                # cancelled), or failed with what ``_work_one`` could not catch.
                resource = None
                self.worked += 1
                cancelled = worker.cancelled
                result = self._interrupted(failure, worker)
                if not self._handed_back(worker, interrupted):
                    await self._finish(
                        interrupted,
                        result,
                        trio.current_time() - worker.started,
                        cancelled=cancelled,
                    )
                # Cancelled from outside the worker's scope: end this task.
                await trio.lowlevel.checkpoint_if_cancelled()

    @staticmethod
    def _handed_back(worker: _Worker, resource: Resource[Any]) -> bool:
        """Whether the row of the work that just ended was handed back while
        it ran (then its result is dropped)."""
        if not worker.handed_back:
            return False
        worker.handed_back = False
        log.info(
            "%s %r: work ended after its row was handed back; its result is dropped",
            resource.kind,
            resource.object_id,
            extra=resource_fields(resource),
        )
        return True

    async def _finish(
        self,
        resource: Resource[Any],
        result: outcome.Outcome[object] | None,
        seconds: float,
        *,
        cancelled: bool = False,
    ) -> None:
        waiting = self._complete(resource, result, seconds, cancelled)
        if waiting is not None:
            await self._send_waiting(waiting)

    def _complete(
        self,
        resource: Resource[Any],
        result: outcome.Outcome[object] | None,
        seconds: float,
        cancelled: bool = False,
    ) -> Completion | None:
        """Free the slot and hand the completion to the outcome writer; the
        completion back if the writer's channel is full (then the caller
        awaits :meth:`_send_waiting`). Not a coroutine: it runs for every
        row, and almost never has to wait."""
        self._slots.release(resource.namespace, resource.kind)
        self.completions_sent += 1
        self._on_slot_free()
        completion = Completion(resource, result, seconds, cancelled)
        try:
            self._completions.send_nowait(completion)
        except trio.WouldBlock:
            return completion
        except (trio.ClosedResourceError, trio.BrokenResourceError):
            self._writer_gone(resource)
        return None

    async def _send_waiting(self, completion: Completion) -> None:
        try:
            # Shielded: a completion must reach the completer even while the
            # pool is torn down, or the claim would wait for the rescuer.
            with trio.CancelScope(shield=True):
                await self._completions.send(completion)
        except (trio.ClosedResourceError, trio.BrokenResourceError):
            self._writer_gone(completion.resource)

    @staticmethod
    def _writer_gone(resource: Resource[Any]) -> None:
        # The stop gave up on writing outcomes (or the completer was
        # cancelled): nothing can record this one now.
        log.error(
            "%s %r: the outcome writer is gone; the rescuer will retry this resource",
            resource.kind,
            resource.object_id,
            extra=resource_fields(resource),
        )

    def _interrupted(
        self, failure: BaseException | None, worker: _Worker
    ) -> outcome.Outcome[object] | None:
        """:meth:`_interruption`, acted on: a BaseException that must end
        the client is reported to ``on_fatal``."""
        if failure is not None and not isinstance(failure, Exception):
            fatal = first_fatal(failure)
            if fatal is not None:
                self._on_fatal(fatal)
        result = self._interruption(failure, worker)
        worker.cancelled = False  # the loop has read it; the next work starts afresh
        return result

    def _interruption(
        self, failure: BaseException | None, worker: _Worker
    ) -> outcome.Outcome[object] | None:
        """:func:`~.results.interrupted_result` of the work in ``worker``."""
        return interrupted_result(
            failure, handed_back=self._forced or worker.cancelled, timeout=worker.timeout
        )

    async def _traced_work(
        self, tracer: Observer, resource: Resource[Any], worker: _Worker
    ) -> outcome.Outcome[object] | None:
        with tracer.trace_work(
            resource.kind,
            resource.namespace,
            resource.object_id,
            resource.attempt,
            resource.metadata,
        ) as finish:
            try:
                result = await self._work_one(resource)
            except BaseException as exc:
                if finish is not None:
                    # Interrupted (a timeout, a cancelled row, a stop): the
                    # span is told what the worker's loop will decide, as
                    # that loop will see it (its scope takes its Cancelled).
                    seen = without_cancelled(exc) if worker.scope_cancelled else exc
                    decided = self._interruption(seen, worker)
                    finish_span(finish, resource, decided, cancelled=worker.cancelled)
                raise
            if finish is not None:
                finish_span(finish, resource, result)
        return result

    async def _work_one(self, resource: Resource[Any]) -> outcome.Outcome[object] | None:
        """Run one work call; a cancellation (timeout, forced stop) propagates."""
        if self._forced:
            return None
        reg = self._controllers.get(resource.kind)
        if reg is None:  # the fetcher only claims registered kinds
            return None
        try:
            reg.decode(resource)
        except Exception as exc:  # a stored object that no longer fits the type
            undecodable = Undecodable(describe_exception(exc))
            undecodable.__cause__ = exc
            return outcome.Error(undecodable)
        # outcome.acapture, written out: most works return None, and one
        # shared Value for that saves building one per row (nothing unwraps
        # a work's Value: the outcome writer reads ``.value``).
        try:
            value = await reg.controller.work(resource)
        except BaseException as exc:
            self.worked += 1
            return self._failed(outcome.Error(exc.with_traceback(without_this_frame(exc))))
        self.worked += 1
        return RETURNED_NONE if value is None else outcome.Value(value)

    def _failed(self, result: outcome.Error) -> outcome.Outcome[object] | None:
        """What becomes of a work that raised."""
        error = result.error
        if not isinstance(error, Exception):
            if _cancelled_around_us():
                result.unwrap()  # our cancel (with whatever came along): the loop sorts it
            return self._not_cancelled(error)
        if self._forced:
            return None  # the work failed because we stopped it
        if not self._asyncio and needed_asyncio(error):
            explained = NoAsyncioLoop(
                "work awaited asyncio code (trio_asyncio.aio_as_trio), but the client "
                "runs no asyncio loop: set Config(asyncio=True)"
            )
            explained.__cause__ = error
            return outcome.Error(explained)
        return result

    def _not_cancelled(self, error: BaseException) -> outcome.Outcome[object] | None:
        """The result of a work that raised a BaseException while nothing had
        cancelled it."""
        fatal = first_fatal(error)
        if fatal is not None:
            # Recorded as this attempt's failure; the client stops and
            # re-raises it once every outcome is written.
            self._on_fatal(fatal)
            return outcome.Error(without_cancelled(error) or fatal)
        rest = without_cancelled(error)
        if self._forced:
            return None
        if rest is not None:
            return outcome.Error(rest)  # errors, beside a stray Cancelled
        # Re-raised outside the cancel scope it belonged to, most likely: it
        # is the work's failure, and must not end the worker (Trio would take
        # it for the cancellation of something around it).
        stray = StrayCancelled("work raised trio.Cancelled, but nothing had cancelled it")
        stray.__cause__ = error
        return outcome.Error(stray)
