"""Wires the engine's services together and runs the shutdown phases.

Start order: completer, worker pools, fetcher, listener, informers, leader
elector, maintenance; each reports ready through ``nursery.start``. Stop:

1. no new claims: the fetcher and listener stop (the fetcher finishes a
   claim in flight, so no claimed row is dropped on the floor);
2. graceful: in-flight work may finish within ``shutdown_grace``;
3. forced: remaining work is cancelled and handed back (``scheduled``, attempt
   restored) so another client picks it up at once; work still running
   ``CANCEL_WAIT`` after the cancel ignores it, and its row is handed back
   without waiting for it (its result, if it comes, is dropped);
4. the completer writes every outcome, within ``FLUSH_TIMEOUT``.

Leadership is resigned at the very start (maintenance stops there anyway),
so a follower takes over within moments rather than after the grace.

A BaseException from a work (KeyboardInterrupt, SystemExit, ...) forces a
stop at once: its attempt is failed, every other row handed back, and the
body of ``open_delta_client`` cancelled (``body_scope``); the client then
re-raises it (``fatal``) once every outcome is written.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import trio

from .._config import NamespaceConfig
from .._logs import get_logger
from .._types import Event, EventCategory, Resource, ResourceRow
from .census import Census
from .clock import ClockSync
from .completer import Completer
from .context import EngineContext
from .events import EventHub
from .fetcher import Fetcher
from .informers import Informers
from .leader import LeaderElector
from .listener import run_listener
from .maintenance import Maintenance, MaintenanceStats
from .pauses import Pauses
from .results import describe_exception
from .slots import Slots
from .workers import WorkerPool

log = get_logger("trio_delta.engine")

#: After the grace period and the forced cancel, how long outcomes may take to
#: be written before we give up on them (the rescuer then recovers the rows).
FLUSH_TIMEOUT = 10.0
#: How long a claim in flight at stop may take before it is cancelled.
FETCH_STOP_TIMEOUT = 5.0
#: How long cancelled work may take to end before its row is handed back
#: anyway. Work that honours cancellation ends within a scheduler pass or a
#: short shielded clean-up; waiting longer would only widen the window in
#: which a process killed during the stop strands rows, waiting less would
#: hand back rows whose work is still cleaning up.
CANCEL_WAIT = 0.25

Service = Callable[..., Awaitable[None]]


@dataclass(frozen=True, slots=True)
class ClientStats:
    """What a client has done since it started (a snapshot)."""

    claimed: int
    """Resources this client claimed."""
    worked: int
    """Work calls that ended (or were cut short)."""
    outcomes_written: int
    """Outcomes committed to the store."""
    informer_runs: int
    """Informer runs this client finished, failed ones included (a run still
    going is not counted until it ends)."""
    informer_failures: int
    """Of those, the runs that failed (an error, a timeout, a stop)."""
    maintenance: MaintenanceStats


def name_resources(resources: list[Resource[Any]], most: int = 20) -> str:
    """``kind 'id', ...`` for a log line, the first ``most`` of them."""
    names = ", ".join(f"{r.kind} {r.object_id!r}" for r in resources[:most])
    return names + (f" and {len(resources) - most} more" if len(resources) > most else "")


class _ServiceHandle:
    """A service task with its own cancel scope and a done event."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.scope = trio.CancelScope()
        self.done = trio.Event()
        self.failed = False  # ended by an exception (a service may also just return)

    async def run(
        self, fn: Service, *args: Any, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        try:
            with self.scope:
                await fn(*args, task_status=task_status)
        except BaseException:
            self.failed = True
            raise
        finally:
            self.done.set()


class Engine:
    def __init__(
        self,
        ctx: EngineContext,
        *,
        namespaces: Mapping[str, NamespaceConfig],
        events: EventHub,
    ) -> None:
        self._ctx = ctx
        self._config = ctx.config
        self._events = events
        self.observer = ctx.observer
        self.tracer = ctx.tracer
        self.listening = False
        self.client_id = ctx.client_id
        self.claim_on_inform = ctx.config.claim_on_inform
        self.slots = Slots(
            {ns: c.max_workers + c.prefetch for ns, c in namespaces.items()}, ctx.controllers
        )
        total_workers = sum(c.max_workers for c in namespaces.values())
        self.completer = Completer(
            ctx,
            buffer=max(total_workers, ctx.config.batch_size),
            on_applied=self._publish,
            wants_rows=events.has_subscribers,
        )
        self.pools = {
            ns: WorkerPool(
                ctx,
                ns,
                c.max_workers,
                slots=self.slots,
                completions=self.completer.send,
                on_slot_free=self._slot_free,
                on_fatal=self._work_raised,
            )
            for ns, c in namespaces.items()
        }
        self.pauses = Pauses(ctx, on_change=self._pauses_changed, on_poll=self._check_running)
        self.fetcher = Fetcher(ctx, pools=self.pools, slots=self.slots, pauses=self.pauses)
        self.informers = Informers(ctx, on_written=self._informed, pauses=self.pauses)
        self.clock_sync = ClockSync(ctx.clock, ctx.store.database_now)
        self.elector = LeaderElector(ctx, self.clock_sync)
        self.maintenance = Maintenance(ctx, self.elector, self.clock_sync, namespaces=namespaces)
        self.census = None if ctx.observer is None else Census(ctx, self.elector, ctx.observer)
        self._handles: dict[str, _ServiceHandle] = {}
        self._stopping = False
        self._force_requested = False
        self._grace_scope: trio.CancelScope | None = None
        #: What a work raised that must end the client, once it has stopped.
        self.fatal: BaseException | None = None
        #: Around the body of ``open_delta_client``: cancelled to stop the
        #: client when a work raised ``fatal``.
        self.body_scope = trio.CancelScope()
        #: Set when :meth:`stop` is over: every claimed row written or handed
        #: back (or given up after ``FLUSH_TIMEOUT``).
        self.stopped = trio.Event()

    def stats(self) -> ClientStats:
        return ClientStats(
            claimed=self.fetcher.claimed,
            worked=sum(p.worked for p in self.pools.values()),
            outcomes_written=self.completer.written,
            informer_runs=self.informers.runs,
            informer_failures=self.informers.failures,
            maintenance=self.maintenance.stats.snapshot(),
        )

    def force(self) -> None:
        """End the graceful phase now (or skip it, if stop has not begun)."""
        self._force_requested = True
        if self._grace_scope is not None:
            self._grace_scope.cancel()

    def running_work(self) -> list[Resource[Any]]:
        """Resources whose work has not ended (after a forced stop: work that
        ignores cancellation, its row already handed back)."""
        return [r for pool in self.pools.values() for r in pool.in_work()]

    def _work_raised(self, exc: BaseException) -> None:
        """A work raised ``exc``, a BaseException that is no cancellation of
        ours: end the client as it would end any program, but hand the other
        rows back first rather than leave them to the rescuer."""
        if self.fatal is not None:
            return
        self.fatal = exc
        log.error(
            "work raised %s: stopping the client, handing running work back",
            describe_exception(exc),
        )
        self._stopping = True  # a freed slot must not start another claim
        self.fetcher.stop()
        for pool in self.pools.values():
            pool.force()
        self.force()
        self.body_scope.cancel()

    def _lost(self) -> None:
        self.listening = False

    def running(self) -> bool:
        """Whether the client runs: started, not stopped, no service failed
        (one with nothing to do, informers without controllers, returns)."""
        return (
            bool(self._handles)
            and not self.stopped.is_set()
            and not any(h.failed for h in self._handles.values())
        )

    def on_payload(self, payload: str | None) -> None:
        """Route a LISTEN payload (None: the connection was re-established)."""
        if payload is None:
            self.listening = True
            self.fetcher.wake()
            self.elector.wake()
        elif payload.startswith("inform:"):
            self.informers.wake(payload[len("inform:") :])
        elif payload.startswith("leader:"):
            self.elector.wake()
        elif payload.startswith("pause:"):
            self.pauses.wake()
        elif payload.startswith("cancel:"):
            self.cancel_work(int(payload[len("cancel:") :]))
        elif payload in self.pools:
            self.fetcher.wake()

    def cancel_work(self, resource_id: int) -> None:
        """Cancel the work of row ``resource_id``, if one of ours runs it
        (the row was deleted or cancelled: its outcome would not apply)."""
        for pool in self.pools.values():
            pool.cancel_work(resource_id)

    async def _check_running(self) -> None:
        """Cancel the works whose rows are no longer pending (deleted or
        cancelled while no notification reached us)."""
        ids = [r.id for pool in self.pools.values() for r in pool.claimed()]
        for resource_id in await self._ctx.store.queue.not_pending(ids):
            self.cancel_work(resource_id)

    def _pauses_changed(self) -> None:
        self.fetcher.wake()
        self.informers.wake_all()

    def _slot_free(self) -> None:
        if not self._stopping:
            self.fetcher.wake()

    def wake(self, namespace: str | None = None) -> None:
        """Wake the fetcher (after a local inform into a namespace we serve)."""
        if namespace is None or namespace in self.pools:
            self.fetcher.wake()

    def reserve_write_claim(self, kind: str, namespace: str) -> bool:
        """Whether a single inform of ``kind`` into ``namespace`` may claim
        its row as it writes it (the client is idle: see
        :meth:`Fetcher.reserve_write_claim`); a slot is held for it until
        :meth:`settle_write_claim`."""
        return (
            self.claim_on_inform
            and not self._stopping
            and self.completer.idle(sum(p.completions_sent for p in self.pools.values()))
            and self.fetcher.reserve_write_claim(kind, namespace)
        )

    def settle_write_claim(
        self,
        kind: str,
        namespace: str,
        row: Resource[Any] | None,
        claimed_at: datetime,
        *,
        unsure_of: str | None = None,
    ) -> None:
        """The row a reserved write wrote (None if it failed): to the
        workers if the write claimed it (at ``claimed_at``). ``unsure_of``:
        the object id, when the write failed in a way that may have
        committed it."""
        self.fetcher.settle_write_claim(kind, namespace, row, claimed_at, unsure_of=unsure_of)

    def _informed(self, namespaces: set[str]) -> None:
        """After an informer batch: look for work only if it is ours to do
        (a client informing for others would otherwise claim nothing after
        every batch)."""
        if not namespaces.isdisjoint(self.pools):
            self.fetcher.wake()

    def _publish(self, rows: list[tuple[ResourceRow[Any], EventCategory]]) -> None:
        if not self._events.has_subscribers():
            return
        now = self._ctx.clock.now()
        for row, category in rows:
            self._events.publish(Event(category, self._ctx.controllers.bind(row), now))

    async def _start(self, nursery: trio.Nursery, name: str, fn: Service, *args: Any) -> None:
        handle = _ServiceHandle(name)
        self._handles[name] = handle
        await nursery.start(handle.run, fn, *args)

    async def start(self, nursery: trio.Nursery) -> None:
        await self._start(nursery, "completer", self.completer.run)
        for ns, pool in self.pools.items():
            await self._start(nursery, f"pool:{ns}", pool.run)
        await self._start(nursery, "pauses", self.pauses.run)
        await self._start(nursery, "fetcher", self.fetcher.run)
        if self._ctx.config.listen:
            await self._start(
                nursery, "listener", run_listener, self._ctx.store, self.on_payload, self._lost
            )
        await self._start(nursery, "informers", self.informers.run)
        await self._start(nursery, "elector", self.elector.run)
        await self._start(nursery, "maintenance", self.maintenance.run)
        if self.census is not None:
            await self._start(nursery, "census", self.census.run)

    async def stop(self) -> None:
        """Run the shutdown phases; call shielded."""
        try:
            await self._stop()
        finally:
            self.stopped.set()

    async def _stop(self) -> None:
        self._stopping = True
        if "listener" in self._handles:
            self._handles["listener"].scope.cancel()
        self._handles["pauses"].scope.cancel()
        # Leadership only serves maintenance, which stops now: hand it over
        # at once rather than after the grace period, so a follower takes
        # over within moments of a graceful stop.
        self._handles["maintenance"].scope.cancel()
        if "census" in self._handles:
            self._handles["census"].scope.cancel()
        self._handles["elector"].scope.cancel()
        await self.elector.resign()
        self.informers.stop()
        await self._stop_fetcher()
        for pool in self.pools.values():
            pool.rows.close()
        pool_handles = [h for name, h in self._handles.items() if name.startswith("pool:")]
        informers = self._handles["informers"]
        grace = 0.0 if self._force_requested else self._config.shutdown_grace
        with trio.move_on_after(grace) as self._grace_scope:
            for handle in (*pool_handles, informers):
                await handle.done.wait()
        if self._grace_scope.cancelled_caught:
            in_flight = self.slots.in_flight()
            log.warning(
                "shutdown grace of %gs over: cancelling %d running work items "
                "(handed back) and any informer run",
                self._config.shutdown_grace,
                in_flight,
            )
            informers.scope.cancel()
            for pool in self.pools.values():
                pool.force()
            if not await self._wait_all(pool_handles, CANCEL_WAIT):
                await self._abandon_stuck_work()
            await self._wait_all([informers], FLUSH_TIMEOUT)
        self.completer.send.close()
        completer = self._handles["completer"]
        if not await self._wait_all([completer], FLUSH_TIMEOUT):
            log.error(
                "outcomes could not be written within %gs; the rescuer will retry those resources",
                FLUSH_TIMEOUT,
            )
            completer.scope.cancel()

    async def _abandon_stuck_work(self) -> None:
        # Hand the rows back now: the client cannot end before these works
        # do, and a process killed while it waits must not strand them.
        stuck: list[Resource[Any]] = []
        queued = 0
        for pool in self.pools.values():
            running, waiting = await pool.abandon()
            stuck += running
            queued += waiting
        if stuck:
            log.warning(
                "%d running work items ignore cancellation; their rows are handed "
                "back and the client waits for them to end: %s",
                len(stuck),
                name_resources(stuck),
            )
        if queued:
            log.warning("%d claimed resources no worker had started are handed back", queued)

    async def _stop_fetcher(self) -> None:
        # Cancelling the fetcher mid-claim could commit a claim whose rows we
        # never see; they would wait for the rescuer. A claim is short, so
        # let it finish unless the database is stuck.
        fetcher = self._handles["fetcher"]
        # An inform claiming as it writes may wait for a row lock as long
        # as the lock timeout; its row must still reach a worker.
        wait = FETCH_STOP_TIMEOUT
        if self.fetcher.write_claiming:
            wait += self._config.lock_timeout
        fetcher.scope.deadline = trio.current_time() + wait
        self.fetcher.stop()
        await fetcher.done.wait()

    @staticmethod
    async def _wait_all(handles: list[_ServiceHandle], seconds: float) -> bool:
        with trio.move_on_after(seconds):
            for handle in handles:
                await handle.done.wait()
            return True
        return False
