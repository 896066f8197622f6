"""What every way of informing does around the store: check the objects, compare
them with the stored ones, and hand back results.

The client (``inform``, ``inform_tx``, ``inform_many``), the informers and
:mod:`trio_delta.producer` all inform; they differ in the connection they
write on, never in what is valid, what is stale or what a result holds.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Any, TypeVar

import msgspec
import sniffio
import trio

from ._errors import ConfigError, ObjectError, ResourceStateError
from ._objects import PreparedObject, decode_object, encode_json, prepare_object
from ._store.params import StaleCheck, dedupe
from ._types import InformOptions, InformOpts, InformResult, ResourceRow
from ._util import single_exception

T = TypeVar("T")

#: The type a kind's stored objects decode to (None: the informed object's own).
DecodeAs = Callable[[str], type[Any] | None]


def _own_type(kind: str) -> type[Any] | None:
    return None


def _type_of(item: PreparedObject) -> type[Any]:
    obj_type: type[Any] = item.obj.__class__
    return obj_type


def object_types(items: Iterable[PreparedObject]) -> set[type[Any]]:
    """The types of the informed objects (what :func:`stale_check` looks at)."""
    return {_type_of(item) for item in items}


#: Objects a bulk inform prepares between two looks at the event loop: well
#: under a millisecond's work, so that a task waiting meanwhile (the writer
#: of :func:`with_chunks_prepared`, whose rows have come) resumes soon.
PREPARE_STEP = 100

#: Objects per chunk of :func:`with_chunks_prepared`: a statement's worth.
STREAM_CHUNK = 2000


def prepare_all(
    objs: Iterable[Any], opts: InformOpts | None, *, default_max_attempts: int, start: int = 0
) -> list[PreparedObject]:
    """Every object checked and encoded, or :class:`ObjectError` for the
    first invalid one, naming its position (``error.index``, counted from
    ``start``)."""
    _check_iterable(objs)
    items: list[PreparedObject] = []
    for index, obj in enumerate(objs, start):
        try:
            items.append(prepare_object(obj, opts, default_max_attempts=default_max_attempts))
        except ObjectError as exc:
            raise ObjectError(f"object {index}: {exc}", index=index) from exc
    return items


async def prepare_all_async(
    objs: Iterable[Any], opts: InformOpts | None, *, default_max_attempts: int
) -> list[PreparedObject]:
    """:func:`prepare_all`, :data:`PREPARE_STEP` objects at a time, letting
    the event loop (Trio's or asyncio's) run between steps: preparing
    100,000 objects takes a few tenths of a second, which every other task
    of the application (a client's workers and lease renewals, a web
    service's requests) would otherwise wait through."""
    objs = object_list(objs)
    return await _prepare_span(objs, 0, len(objs), opts, default_max_attempts)


async def _prepare_span(
    objs: Sequence[Any],
    start: int,
    end: int,
    opts: InformOpts | None,
    default_max_attempts: int,
) -> list[PreparedObject]:
    """``objs[start:end]`` prepared :data:`PREPARE_STEP` at a time, letting
    the event loop run after each step; an invalid object is named by its
    position in ``objs``."""
    items: list[PreparedObject] = []
    for step in range(start, end, PREPARE_STEP):
        items += prepare_all(
            objs[step : min(step + PREPARE_STEP, end)],
            opts,
            default_max_attempts=default_max_attempts,
            start=step,
        )
        if sniffio.current_async_library() == "trio":
            await trio.lowlevel.checkpoint()
        else:
            await asyncio.sleep(0)
    return items


def _check_iterable(objs: object) -> None:
    if isinstance(objs, str | bytes) or not isinstance(objs, Iterable):
        raise ObjectError(f"objects must be an iterable of objects, got {type(objs).__name__}")


def object_list(objs: Iterable[Any]) -> list[Any]:
    """The objects of a bulk inform as a list (an iterator is read once),
    or :class:`ObjectError` if ``objs`` is not an iterable of objects."""
    _check_iterable(objs)
    return list(objs)


class RepeatedObject(Exception):
    """An object of :func:`with_chunks_prepared` that repeats one of an earlier
    chunk: the chunks cannot be written one by one (an object given twice
    is written once, as its last version)."""


#: Gives the next chunk of objects, prepared; None after the last.
NextChunk = Callable[[], Awaitable[list[PreparedObject] | None]]


# Preparing an object (checking, encoding, hashing it) costs the client
# about what writing it costs the server. Prepared all before the first
# statement, 100,000 objects kept the server idle for half a second; here
# a task of its own prepares the next chunk while the last one is written.
async def with_chunks_prepared(
    objs: Sequence[Any],
    opts: InformOpts | None,
    use: Callable[[NextChunk], Awaitable[T]],
    *,
    default_max_attempts: int,
) -> T:
    """``use(next_chunk)``, where ``next_chunk()`` gives ``objs`` prepared
    (as :func:`prepare_all`) :data:`STREAM_CHUNK` at a time, each made on
    Trio while the caller works on the one before. ``next_chunk`` raises
    :class:`ObjectError` for a chunk with an invalid object, and
    :class:`RepeatedObject` for one repeating an object of an earlier chunk."""
    send, receive = trio.open_memory_channel[list[PreparedObject] | Exception](0)

    async def next_chunk() -> list[PreparedObject] | None:
        try:
            chunk = await receive.receive()
        except trio.EndOfChannel:
            return None
        if isinstance(chunk, Exception):
            raise chunk
        return chunk

    used: list[T] = []
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_prepare_chunks, objs, opts, default_max_attempts, send)
            used.append(await use(next_chunk))
            nursery.cancel_scope.cancel()
    except BaseExceptionGroup as group:
        # One call: what it raised, as itself (a cancel reaches both tasks),
        # with the cause it had (a StoreError's driver error, say).
        error = single_exception(group)
        raise error from error.__cause__
    return used[0]


async def _prepare_chunks(
    objs: Sequence[Any],
    opts: InformOpts | None,
    default_max_attempts: int,
    send: trio.MemorySendChannel[list[PreparedObject] | Exception],
) -> None:
    """The preparer of :func:`with_chunks_prepared`: holds one chunk ready
    until it is taken; its last send is what failed, if anything did."""
    seen: set[tuple[str, str]] = set()
    async with send:
        try:
            for start in range(0, len(objs), STREAM_CHUNK):
                end = min(start + STREAM_CHUNK, len(objs))
                chunk = await _prepare_span(objs, start, end, opts, default_max_attempts)
                keys = {(item.kind, item.object_id) for item in chunk}
                if not seen.isdisjoint(keys):
                    raise RepeatedObject
                seen |= keys
                await send.send(chunk)
        except Exception as exc:
            await send.send(exc)


def stale_check(
    object_types: Iterable[type[Any]], decode_as: DecodeAs = _own_type
) -> StaleCheck | None:
    """A stale check by the objects' own ``compare(other) -> int``, or None
    when no type among ``object_types`` has one (then nothing stored need be
    read first). The stored object is decoded to ``decode_as(kind)``, else to
    the informed object's type; one that no longer decodes is not newer."""
    if not any(getattr(t, "compare", None) is not None for t in object_types):
        return None

    def is_stale(incoming: PreparedObject, stored: bytes) -> bool:
        compare = getattr(incoming.obj, "compare", None)
        if compare is None:
            return False
        try:
            existing = decode_object(stored, decode_as(incoming.kind) or _type_of(incoming))
        except Exception:
            return False
        return compare(existing) < 0

    return is_stale


def results_for(
    items: Sequence[PreparedObject],
    results: Sequence[InformResult[Any]],
    decode_as: DecodeAs = _own_type,
) -> list[InformResult[Any]]:
    """One result per informed object, in input order; ``results`` are the
    store's, one per distinct (kind, id) in input order, their rows to be
    bound by :func:`bind_row` (when first read)."""
    if len(results) == len(items):  # no object given twice: the same order
        bound: dict[Any, Any] = {}
        for item, result in zip(items, results, strict=True):
            build = result._build  # pyright: ignore[reportPrivateUsage]
            if build is None:
                bind_row(item, result.resource, decode_as)
            else:  # bound when built: one builder per call, not per result
                if (binder := bound.get(build)) is None:
                    binder = bound[build] = _binding(build, decode_as)
                result._build = binder  # pyright: ignore[reportPrivateUsage]
        return list(results)
    by_key = {(r.resource.kind, r.resource.object_id): r for r in results}
    out: list[InformResult[Any]] = []
    for item in items:
        result = by_key[(item.kind, item.object_id)]
        row = bind_row(item, result.resource, decode_as)
        out.append(InformResult(row, result.already_exists, result.changed, stale=result.stale))
    return out


def _binding(
    build: Callable[[Any, Any], ResourceRow[Any]], decode_as: DecodeAs
) -> Callable[[PreparedObject, Any], ResourceRow[Any]]:
    """``build``, then :func:`bind_row` on the row it makes."""

    def build_and_bind(item: PreparedObject, columns: Any) -> ResourceRow[Any]:
        return bind_row(item, build(item, columns), decode_as)

    return build_and_bind


def distinct_items(
    items: Sequence[PreparedObject], results: Sequence[InformResult[Any]]
) -> Sequence[PreparedObject]:
    """The objects the store's ``results`` are for, one each: ``items``
    less the repeats (the store writes an object given twice once)."""
    return items if len(items) == len(results) else dedupe(items)


def changed_namespaces(
    distinct: Sequence[PreparedObject], results: Sequence[InformResult[Any]]
) -> set[str]:
    """The namespaces ``results`` gave work to, read from their objects
    (:func:`distinct_items`): no result's row need be built for it."""
    return {item.namespace for item, r in zip(distinct, results, strict=True) if r.changed}


def with_metadata(items: list[PreparedObject], extra: Mapping[str, str]) -> list[PreparedObject]:
    """``items`` with ``extra`` added to their metadata (keys they already
    have keep their own value): a trace context to store with them. The
    objects of one call mostly share their metadata (none at all, often):
    each distinct value is merged once."""
    merged: dict[bytes, bytes] = {}
    out: list[PreparedObject] = []
    for item in items:
        metadata = merged.get(item.metadata)
        if metadata is None:
            decoded: dict[str, Any] = msgspec.json.decode(item.metadata)
            for key, value in extra.items():
                decoded.setdefault(key, value)
            metadata = merged[item.metadata] = msgspec.json.encode(decoded)
        out.append(item.with_metadata(metadata))
    return out


def inform_counts(
    distinct: Sequence[PreparedObject], results: Sequence[InformResult[Any]]
) -> Counter[tuple[str, str]]:
    """How many of ``results`` were new, changed, unchanged or stale, by
    their objects' kind (:func:`distinct_items`): ``(kind, result) -> count``."""
    counts: Counter[tuple[str, str]] = Counter()
    for item, r in zip(distinct, results, strict=True):
        if r.changed:
            name = "changed" if r.already_exists else "new"
        else:
            name = "stale" if r.stale else "unchanged"
        counts[(item.kind, name)] += 1
    return counts


def bind_row(
    item: PreparedObject, row: ResourceRow[Any], decode_as: DecodeAs = _own_type
) -> ResourceRow[Any]:
    """``row``, the stored resource of ``item``, with its object set: the
    informed object itself when the row holds it (same hash), else the
    stored one decoded to its type (left plain JSON if it no longer fits)."""
    if row.hash == item.hash:
        row._set_decoded(item.obj)  # pyright: ignore[reportPrivateUsage]
    else:
        with contextlib.suppress(Exception):
            row._set_decoded(  # pyright: ignore[reportPrivateUsage]
                decode_object(row.encoded_object, decode_as(item.kind) or _type_of(item))
            )
    return row


def inform_run_options(options: InformOptions | None) -> dict[str, Any] | None:
    """What a requested informer run is given (labels, limit, order_by), as
    stored with the request; None for the informer's defaults."""
    if options is None:
        return None
    if not isinstance(options, InformOptions):
        raise ConfigError(f"options must be InformOptions, got {options!r}")
    extra = {"labels": dict(options.labels), "limit": options.limit, "order_by": options.order_by}
    encode_json(extra, what="inform options")
    return extra


def invalidate_refused(
    item: PreparedObject, current: ResourceRow[Any] | None
) -> ResourceStateError:
    """Why ``item``'s resource was not invalidated: missing, or not synced."""
    if current is None:
        return ResourceStateError(f"no {item.kind} resource with id {item.object_id!r}")
    return ResourceStateError(
        f"{item.kind} {item.object_id!r} is {current.state.value}; only synced "
        "resources can be invalidated"
    )
