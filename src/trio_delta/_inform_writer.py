"""How a client's informs are written: one object (sharing statements with
concurrent calls), a batch, or a bulk inform in chunks written while the
next are prepared; each counted, traced, and waking the client's own
fetcher (at once, or when the transaction it was written in commits).

The client checks what it is given and calls in here; what is valid, what
is stale and what a result holds are :mod:`._informing`'s, as for every
way of informing.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Callable, Mapping, Sequence
from contextlib import AbstractContextManager, asynccontextmanager, nullcontext
from typing import Any

from ._coalescer import InformCoalescer
from ._config import Config
from ._engine.clock import Clock
from ._engine.runtime import Engine
from ._errors import ClientClosedError
from ._informing import (
    STREAM_CHUNK,
    DecodeAs,
    NextChunk,
    RepeatedObject,
    changed_namespaces,
    distinct_items,
    inform_counts,
    object_types,
    prepare_all_async,
    results_for,
    stale_check,
    with_chunks_prepared,
    with_metadata,
)
from ._objects import PreparedObject
from ._store.params import UpsertParams
from ._store.port import AppConnection, Store, StoreTransaction
from ._types import InformOpts, InformResult
from ._util import NoPublicConstructor, construct

__all__ = ["InformWriter", "Transaction"]


class Transaction(metaclass=NoPublicConstructor):
    """A database transaction of the user's; informs made with
    :meth:`Client.inform_tx` commit or roll back with it. Get one from
    :meth:`Client.transaction`."""

    def __init__(self, store_tx: StoreTransaction) -> None:
        self._store_tx = store_tx
        self._on_commit: list[Callable[[], None]] = []
        self._closed = False

    async def execute(
        self, query: str, params: Sequence[Any] | Mapping[str, Any] | None = None
    ) -> list[tuple[Any, ...]]:
        """Run ``query`` with bound ``params`` in this transaction; returns
        its rows (an empty list for statements without any)."""
        if self._closed:
            raise ClientClosedError("this transaction is already over")
        return await self._store_tx.execute(query, params)


class InformWriter:
    """The writing half of a client's informs (see the module)."""

    def __init__(
        self, store: Store, clock: Clock, engine: Engine, config: Config, decode_as: DecodeAs
    ) -> None:
        self._store = store
        self._clock = clock
        self._engine = engine
        self._config = config
        self._decode_as = decode_as
        self.coalescer = InformCoalescer(
            store.queue, clock.now, batch_size=config.batch_size, decode_as=decode_as, claims=engine
        )

    @asynccontextmanager
    async def transaction(self, *, informs_only: bool = False) -> AsyncGenerator[Transaction, None]:
        """A :class:`Transaction`; its informs wake our fetcher when it commits."""
        async with self._store.queue.transaction(informs_only=informs_only) as store_tx:
            tx = construct(Transaction, store_tx)
            try:
                yield tx
            finally:
                tx._closed = True  # pyright: ignore[reportPrivateUsage]
        for callback in tx._on_commit:  # pyright: ignore[reportPrivateUsage]
            callback()

    async def write(
        self, items: list[PreparedObject], tx: Transaction | AppConnection | None
    ) -> list[InformResult[Any]]:
        """Upsert ``items`` (in ``tx`` if given) and wake our fetcher for the
        namespaces that gained work: now, on the commit of a transaction of
        ours, or through the NOTIFY an application's connection sends when
        it commits."""
        if self._engine.tracer is None:  # the usual case: no context manager per call
            return await self._write_traced(items, tx)
        # One span per call, named by its first object's kind; the trace
        # context goes into the resources' metadata, for their work's span.
        with self._trace(items[0].kind, len(items)) as context:
            if context:
                items = with_metadata(items, context)
            return await self._write_traced(items, tx)

    async def write_many(self, objs: list[Any], opts: InformOpts | None) -> list[InformResult[Any]]:
        """``objs`` checked and written in one transaction of ours: more
        than a chunk's worth written chunk by chunk while the next is
        prepared (all at once if an object repeats one of an earlier chunk)."""
        max_attempts = self._config.max_attempts
        if len(objs) <= STREAM_CHUNK:
            items = await prepare_all_async(objs, opts, default_max_attempts=max_attempts)
            return await self.write(items, None) if items else []
        first: type[Any] = objs[0].__class__
        with self._trace(str(getattr(first, "kind", "")), len(objs)) as context:
            try:
                return await self._write_streamed(objs, opts, context)
            except RepeatedObject:
                pass  # rolled back: written at once below, each object once
            items = await prepare_all_async(objs, opts, default_max_attempts=max_attempts)
            return await self._write_traced(
                with_metadata(items, context) if context else items, None
            )

    def _trace(self, kind: str, count: int) -> AbstractContextManager[Mapping[str, str] | None]:
        tracer = self._engine.tracer
        return nullcontext(None) if tracer is None else tracer.trace_inform(kind, count)

    async def _write_traced(
        self, items: list[PreparedObject], tx: Transaction | AppConnection | None
    ) -> list[InformResult[Any]]:
        store_tx: StoreTransaction | AppConnection | None = tx
        if isinstance(tx, Transaction):
            if tx._closed:  # pyright: ignore[reportPrivateUsage]
                raise ClientClosedError("this transaction is already over")
            store_tx = tx._store_tx  # pyright: ignore[reportPrivateUsage]
        if tx is None and len(items) == 1:
            # Concurrent single informs share statements.
            results = [await self.coalescer.upsert(items[0])]
        else:
            is_stale = stale_check(object_types(items), self._decode_as)
            results = await self._store.queue.upsert(
                items, UpsertParams(self._clock.now(), is_stale=is_stale), store_tx
            )
        self._written(items, results, tx)
        return results_for(items, results, self._decode_as)

    async def _write_streamed(
        self, objs: list[Any], opts: InformOpts | None, context: Mapping[str, str] | None
    ) -> list[InformResult[Any]]:
        """:meth:`write_many` a chunk at a time, each written while the next
        is prepared; raises (rolled back) :class:`RepeatedObject` if an
        object repeats one of an earlier chunk. ``context``: metadata to add
        (a trace context)."""
        types: set[type[Any]] = {o.__class__ for o in objs}
        # One time for every chunk, as for one statement.
        params = UpsertParams(self._clock.now(), is_stale=stale_check(types, self._decode_as))
        items: list[PreparedObject] = []
        async with self.transaction(informs_only=True) as tx:
            store_tx = tx._store_tx  # pyright: ignore[reportPrivateUsage]

            async def upsert(next_chunk: NextChunk) -> list[InformResult[Any]]:
                async def each() -> list[PreparedObject] | None:
                    chunk = await next_chunk()
                    if chunk is not None:
                        if context:
                            chunk = with_metadata(chunk, context)
                        items.extend(chunk)
                    return chunk

                return await self._store.queue.upsert_chunks(each, params, store_tx)

            results = await with_chunks_prepared(
                objs, opts, upsert, default_max_attempts=self._config.max_attempts
            )
        # Committed: counted, and the workers woken, only now.
        self._written(items, results, None)
        return results_for(items, results, self._decode_as)

    def _written(
        self,
        items: Sequence[PreparedObject],
        results: Sequence[InformResult[Any]],
        tx: Transaction | AppConnection | None,
    ) -> None:
        """Count what an inform wrote, and wake our fetcher for the
        namespaces that gained work (now, or when ``tx`` commits)."""
        distinct = distinct_items(items, results)
        namespaces = changed_namespaces(distinct, results)
        observer = self._engine.observer
        if observer is not None:
            # Counted when written: in a transaction that is later rolled
            # back, too (its commit is the application's, and unseen here).
            for (kind, name), count in inform_counts(distinct, results).items():
                observer.informed(kind, name, count)
        if namespaces:
            engine = self._engine

            def wake() -> None:
                for namespace in namespaces:
                    engine.wake(namespace)

            if tx is None:
                wake()
            elif isinstance(tx, Transaction):
                tx._on_commit.append(wake)  # pyright: ignore[reportPrivateUsage]
