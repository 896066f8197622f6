"""The client: ``open_delta_client`` and the API users call.

Thin by design: it validates input, talks to the store for the user's calls
and runs the engine's services under one nursery.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Iterable, Mapping
from contextlib import AbstractContextManager, asynccontextmanager
from typing import Any, TypeVar

import trio

from ._config import Config, NamespaceConfig, check_name
from ._engine.context import EngineContext
from ._engine.events import EventHub, Subscription
from ._engine.runtime import ClientStats, Engine
from ._errors import (
    ClientClosedError,
    ConfigError,
    ObjectError,
    StoreError,
)
from ._health import Health
from ._inform_writer import InformWriter, Transaction
from ._informing import (
    inform_run_options,
    invalidate_refused,
    object_list,
    prepare_all_async,
)
from ._objects import check_kind, prepare_object
from ._store.params import Change, Pause, ResourceFilter, check_pause_target
from ._store.port import AppConnection
from ._types import (
    EventCategory,
    InformerState,
    InformOptions,
    InformOpts,
    InformResult,
    ResourceRow,
    ResourceState,
)
from ._util import NoPublicConstructor

__all__ = ["Client", "ClientStats", "Transaction"]

T = TypeVar("T")


class Client(metaclass=NoPublicConstructor):
    """A running trio_delta client; get one from :func:`open_delta_client`."""

    def __init__(self, ctx: EngineContext, namespaces: Mapping[str, NamespaceConfig]) -> None:
        self._store = ctx.store
        self._clock = ctx.clock
        self._controllers = ctx.controllers
        self._namespaces = namespaces
        self._config = ctx.config
        self._id = ctx.client_id
        self._events = EventHub(ctx.config.event_buffer)
        self._engine = Engine(ctx, namespaces=namespaces, events=self._events)
        self._writer = InformWriter(
            ctx.store, ctx.clock, self._engine, ctx.config, decode_as=self._decode_as
        )
        self._closed = False

    def __repr__(self) -> str:
        return f"<trio_delta.Client id={self._id!r} kinds={list(self._controllers.kinds())}>"

    @property
    def id(self) -> str:
        """Unique per client instance; recorded in ``attempted_by``."""
        return self._id

    @property
    def is_leader(self) -> bool:
        """Whether this client currently runs maintenance."""
        return self._engine.elector.is_leader

    @property
    def stats(self) -> ClientStats:
        """Counters of this client's work so far (a snapshot)."""
        return self._engine.stats()

    @property
    def pool_in_use(self) -> tuple[int, int]:
        """Pool connections in use, and the most the pool opens."""
        return self._store.pool_usage()

    async def health(self, *, within: float = 2.0) -> Health:
        """Whether the client is running and ready, and what it last did;
        asks the database for one round trip (at most ``within`` seconds)."""
        engine = self._engine
        error: str | None = None
        with trio.move_on_after(within) as scope:
            try:
                await self._store.ping()
            except StoreError as exc:
                error = str(exc)
        if scope.cancelled_caught:
            error = f"the database did not answer within {within:g}s"
        now = trio.current_time()

        def ago(at: float | None) -> float | None:
            return None if at is None else now - at

        in_use, size = self._store.pool_usage()
        return Health(
            running=engine.running() and not self._closed,
            database=error is None,
            database_error=error,
            listening=engine.listening if self._config.listen else None,
            is_leader=engine.elector.is_leader,
            leader_lease_left=engine.elector.lease_left,
            last_claim=ago(engine.fetcher.last_claim_at),
            last_outcome_write=ago(engine.completer.last_written_at),
            pool_in_use=in_use,
            pool_size=size,
        )

    def force_stop(self) -> None:
        """Skip what remains of the graceful stop: running work is cancelled
        and handed back at once. Call it while the client is stopping (for
        example on a second Ctrl-C), or before leaving the block to stop
        without a grace period."""
        self._engine.force()

    @property
    def config(self) -> Config:
        return self._config

    # -- informing ------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise ClientClosedError("the client is stopped")

    def _decode_as(self, kind: str) -> type[Any] | None:
        reg = self._controllers.get(kind)
        return None if reg is None else reg.object_type

    async def inform(self, obj: T, opts: InformOpts | None = None) -> InformResult[T]:
        """Store ``obj`` as a resource and schedule it to be worked.

        Unchanged objects (same JSON) are not rescheduled; with ``compare``,
        an object older than the stored one is ignored. Raises
        :class:`ObjectError` for an invalid object, writing nothing.

        One statement, committed when it returns. Calls made while another
        is in flight (many tasks informing at once) share the next
        statement; each still gets its own result or its own error. Made
        while this client is idle, the statement also claims the row for
        this client's workers (:attr:`Config.claim_on_inform`): the result
        is then ``pending`` and the work starts as the call returns.
        """
        self._check_open()
        item = prepare_object(obj, opts, default_max_attempts=self._config.max_attempts)
        (result,) = await self._writer.write([item], None)
        return result

    async def inform_tx(
        self, tx: Transaction | AppConnection, obj: T, opts: InformOpts | None = None
    ) -> InformResult[T]:
        """Like :meth:`inform`, inside the transaction ``tx``: the resource
        becomes visible, and workers are woken, only when it commits.

        ``tx`` is a :class:`Transaction` from :meth:`transaction`, or the
        application's own connection: a synchronous ``psycopg.Connection``
        (used from a thread, so the event loop never blocks) or an async one
        from :func:`trio_delta.connect`. On a connection in autocommit with no
        transaction open, the inform is a transaction of its own.
        """
        self._check_open()
        item = prepare_object(obj, opts, default_max_attempts=self._config.max_attempts)
        (result,) = await self._writer.write([item], tx)
        return result

    async def inform_many(
        self, objs: Iterable[Any], opts: InformOpts | None = None
    ) -> list[InformResult[Any]]:
        """Store many objects in one transaction, with batched statements:
        the fast way to inform in bulk. One result per object, in input
        order (an object given twice is written once, as its last version).

        One invalid object rejects them all, writing nothing:
        :class:`ObjectError` names it by position (``error.index``).

        More than 2,000 objects are written 2,000 at a time while the next
        are checked and encoded (still one transaction).
        """
        self._check_open()
        return await self._writer.write_many(object_list(objs), opts)

    async def inform_many_tx(
        self, tx: Transaction | AppConnection, objs: Iterable[Any], opts: InformOpts | None = None
    ) -> list[InformResult[Any]]:
        """:meth:`inform_many` inside the transaction ``tx`` (as :meth:`inform_tx`)."""
        self._check_open()
        items = await prepare_all_async(objs, opts, default_max_attempts=self._config.max_attempts)
        return await self._writer.write(items, tx) if items else []

    @asynccontextmanager
    async def transaction(self) -> AsyncGenerator[Transaction, None]:
        """A transaction for the user's SQL and :meth:`inform_tx`; commits when
        the block exits normally, rolls back when it raises."""
        self._check_open()
        async with self._writer.transaction() as tx:
            yield tx

    async def schedule_inform(
        self,
        kind: str,
        process_existing: bool = False,
        options: InformOptions | None = None,
    ) -> None:
        """Run ``kind``'s informer as soon as possible, on whichever client
        has its controller (this one need not).

        ``process_existing`` re-works the objects the run yields even when
        unchanged, passes ``after=None`` and leaves the cursor alone.
        ``options`` supplies ``labels``, ``limit`` and ``order_by`` for that run.
        """
        check_kind(kind, error=ConfigError)
        self._check_open()
        extra = inform_run_options(options)
        await self._store.control.request_inform(
            kind, now=self._clock.now(), process_existing=bool(process_existing), options=extra
        )
        self._engine.informers.wake(kind)

    async def invalidate(self, obj: object) -> ResourceRow[Any]:
        """Expire the synced resource of ``obj`` so it is worked again.

        Raises :class:`ResourceStateError` when there is no such resource or
        it is not synced (pending, failed, ... resources are already due).
        """
        self._check_open()
        item = prepare_object(obj, None, default_max_attempts=self._config.max_attempts)
        rows = await self._store.insights.change(
            Change.INVALIDATE,
            ResourceFilter(kind=item.kind, object_ids=(item.object_id,)),
            now=self._clock.now(),
        )
        if not rows:
            current = await self._store.insights.get_resource(item.kind, item.object_id)
            raise invalidate_refused(item, current)
        self._engine.wake(rows[0].namespace)
        return self._controllers.bind(rows[0])

    async def cancel(self, kind: str, object_id: str) -> ResourceRow[Any] | None:
        """Stop syncing a resource: it becomes ``deleted`` (the cleaner
        removes it after retention; a changed object brings it back), and a
        work running on it, in this client or any other, is cancelled
        within moments (its ``finally`` blocks run; whatever it would have
        written is refused). Returns the row as it is now, None if there is
        no such resource or it was deleted already."""
        self._check_open()
        check_kind(kind, error=ConfigError)
        rows = await self._store.insights.change(
            Change.DELETE,
            ResourceFilter(kind=kind, object_ids=(object_id,)),
            now=self._clock.now(),
        )
        for row in rows:
            self._engine.cancel_work(row.id)  # ours at once; others hear the NOTIFY
        return self._controllers.bind(rows[0]) if rows else None

    async def pause(self, kind: str | None = None, namespace: str | None = None) -> bool:
        """Stop every client from claiming work of ``kind`` (in every
        namespace, or only in ``namespace``), or of every kind in
        ``namespace``; work already running finishes, and a paused kind's
        informer does not run. Lasts until :meth:`resume`, across restarts.
        False when it was paused already."""
        self._check_open()
        pause = Pause(*check_pause_target(kind, namespace), self._clock.now(), self.id)
        added = await self._store.control.pause(pause)
        await self._engine.pauses.refresh()
        return added

    async def resume(self, kind: str | None = None, namespace: str | None = None) -> bool:
        """Undo the :meth:`pause` of exactly ``kind`` and ``namespace``;
        False when there was none."""
        self._check_open()
        removed = await self._store.control.resume(*check_pause_target(kind, namespace))
        await self._engine.pauses.refresh()
        return removed

    async def list_pauses(self) -> list[Pause]:
        """Every pause in force, by kind then namespace."""
        self._check_open()
        return await self._store.control.list_pauses()

    # -- reading --------------------------------------------------------------

    async def get_informer(self, kind: str) -> InformerState | None:
        """The schedule and last run of ``kind``'s informer, or None if no
        client has registered or requested it yet."""
        check_kind(kind, error=ConfigError)
        return await self._store.control.get_controller(kind)

    async def list_informers(self) -> list[InformerState]:
        """Every kind's informer state, ordered by kind."""
        return await self._store.control.list_controllers()

    async def get_resource(self, kind: str, object_id: str) -> ResourceRow[Any] | None:
        """The resource of ``kind`` with ``object_id``, or None."""
        check_kind(kind, error=ConfigError)
        if not isinstance(object_id, str):
            raise ObjectError(f"object_id must be str, got {type(object_id).__name__}")
        if "\x00" in object_id:
            return None  # cannot exist: ids with NUL are rejected at inform
        row = await self._store.insights.get_resource(kind, object_id)
        return None if row is None else self._controllers.bind(row)

    async def list_resources(
        self,
        *,
        kind: str | None = None,
        namespace: str | None = None,
        state: ResourceState | str | None = None,
        limit: int | None = None,
        after_id: int | None = None,
    ) -> list[ResourceRow[Any]]:
        """Resources matching every given filter, ordered by id; all of them
        when ``limit`` is None. Page with ``after_id`` = the last id seen."""
        if kind is not None:
            check_kind(kind, error=ConfigError)
        if namespace is not None:
            check_name("namespace", namespace)
        parsed_state: ResourceState | None = None
        if state is not None:
            try:
                parsed_state = ResourceState(state)
            except ValueError:
                raise ConfigError(f"unknown state {state!r}") from None
        for name, value in (("limit", limit), ("after_id", after_id)):
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, int) or value < 0
            ):
                raise ConfigError(f"{name} must be a non-negative integer, got {value!r}")
        rows = await self._store.insights.list_resources(
            ResourceFilter(
                kind=kind,
                namespace=namespace,
                states=None if parsed_state is None else (parsed_state,),
                limit=limit,
                after_id=after_id,
            )
        )
        return [self._controllers.bind(r) for r in rows]

    # -- events ---------------------------------------------------------------

    def subscribe(self, *categories: EventCategory) -> AbstractContextManager[Subscription]:
        """Receive events of ``categories`` (all when none are given) while
        the ``with`` block runs. A subscriber that falls more than
        ``config.event_buffer`` events behind loses the newest; see
        :attr:`Subscription.dropped`."""
        return self._events.subscribe(*categories)
