"""Between Postgres columns and trio_delta's values, both ways: the rows
read back (one mapping for every part of the store and the producer), and
the batch parameters written.
"""

from __future__ import annotations

import itertools
import json
import struct
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import msgspec
import psycopg
from psycopg import pq
from psycopg.adapt import Dumper

from ..._objects import PreparedObject
from ..._types import AttemptError, ResourceRow, ResourceState, build_row

TEXT_OID, TEXT_ARRAY_OID = 25, 1009
BYTEA_OID, BYTEA_ARRAY_OID = 17, 1001


def load_json(data: str | bytes) -> Any:
    """JSON from the database, decoded by msgspec: half the cost of
    ``json.loads`` per claimed row (metadata and errors). What msgspec
    refuses but Postgres' json type holds (1e400, lone surrogate escapes,
    written by hand in SQL) still loads, through the standard library."""
    try:
        return msgspec.json.decode(data)
    except msgspec.DecodeError:
        return json.loads(data)


def _errors_from_text(text: str) -> tuple[AttemptError, ...]:
    return tuple(
        AttemptError(
            at=datetime.fromisoformat(e["at"]),
            attempt=int(e["attempt"]),
            error=str(e["error"]),
            trace=str(e.get("trace", "")),
        )
        for e in load_json(text)
    )


def row_from_columns(row: Sequence[Any]) -> ResourceRow[Any]:
    """A row of ``RESOURCE_COLUMNS``.

    Metadata and errors arrive as text and are decoded here only when not
    empty: psycopg's JSON loaders are Python calls, and on the claim path
    they were half the cost of reading a row (4.3 -> 2.2 us a row)."""
    metadata, errors = row[9], row[11]
    return build_row(
        row[0],
        row[1],
        row[2],
        row[3],
        ResourceState.parse(row[4]),
        row[5],
        row[6],
        row[7].encode(),
        bytes(row[8]),
        {} if metadata == "{}" else load_json(metadata),
        tuple(row[10]),
        () if errors == "[]" else _errors_from_text(errors),
        row[12],
        row[13],
        row[14],
        row[15],
        row[16],
        row[17],
        row[18],
        row[19],
    )


def row_from_written(item: PreparedObject, row: Sequence[Any]) -> ResourceRow[Any]:
    """The resource ``item`` was just written to, from what the ``upsert``
    query returns (the rest, as stored, is what ``item`` holds)."""
    errors = row[5]
    return build_row(
        row[2],
        item.kind,
        item.object_id,
        item.namespace,
        ResourceState.parse(row[3]),
        row[4],
        item.max_attempts,
        item.encoded,
        item.hash,
        {} if item.metadata == b"{}" else load_json(item.metadata),
        item.tags,
        () if errors == "[]" else _errors_from_text(errors),
        row[6],
        row[7],
        row[8],
        row[9],
        row[10],
        row[11],
        row[14],
        row[15],
    )


def array_or_all(params: dict[str, Any], name: str, values: list[Any]) -> None:
    """``values`` as the array parameter ``name``, or, when they are all
    equal, as the one value ``name_all`` with an empty array: psycopg
    encodes an array element by element in Python (~0.2 us each), and a
    batch's rows mostly share a kind, a namespace, an outcome."""
    first = values[0]
    if values.count(first) == len(values):
        params[name] = []
        params[f"{name}_all"] = first
    else:
        params[name] = values
        params[f"{name}_all"] = None


def encode_error(error: AttemptError) -> str:
    return msgspec.json.encode(
        {
            "at": error.at.isoformat(),
            "attempt": error.attempt,
            "error": error.error,
            "trace": error.trace,
        }
    ).decode()


# An upsert's three arrays of distinct values (ids, objects, hashes),
# encoded by psycopg element by element in Python, were most of the time
# a bulk inform's statement took to send, with the server idle. Built here
# in one pass, ready to send, they cost less (a 5,000-element array: 2.9
# -> 1.75 ms) and can be built while the server writes the statement before.


class _PackedArray(bytes):
    """A one-dimensional array, no NULLs, in Postgres' binary format."""

    __slots__ = ()


class PackedTextArray(_PackedArray):
    __slots__ = ()


class PackedByteaArray(_PackedArray):
    __slots__ = ()


class _PackedTextArrayDumper(Dumper):
    oid = TEXT_ARRAY_OID
    format = pq.Format.BINARY

    def dump(self, obj: Any) -> bytes:
        packed: bytes = obj
        return packed


class _PackedByteaArrayDumper(_PackedTextArrayDumper):
    oid = BYTEA_ARRAY_OID


_HEADER = struct.Struct("!iiiii").pack
_LENGTH = struct.Struct("!i").pack


def _pack(element_oid: int, values: Sequence[bytes]) -> bytes:
    lengths = map(_LENGTH, map(len, values))
    return b"".join(
        itertools.chain(
            (_HEADER(1, 0, element_oid, len(values), 1),),
            itertools.chain.from_iterable(zip(lengths, values, strict=True)),
        )
    )


def pack_text_array(values: Sequence[bytes]) -> PackedTextArray:
    """UTF-8 ``values`` as a ``text[]`` parameter (on a connection that
    :func:`can_send_packed`)."""
    return PackedTextArray(_pack(TEXT_OID, values))


def pack_bytea_array(values: Sequence[bytes]) -> PackedByteaArray:
    """``values`` as a ``bytea[]`` parameter (as :func:`pack_text_array`)."""
    return PackedByteaArray(_pack(BYTEA_OID, values))


def can_send_packed(conn: psycopg.AsyncConnection[Any] | psycopg.Connection[Any]) -> None:
    """Teach ``conn`` (one of the store's own, when it is set up) to send
    packed arrays."""
    conn.adapters.register_dumper(PackedTextArray, _PackedTextArrayDumper)
    conn.adapters.register_dumper(PackedByteaArray, _PackedByteaArrayDumper)


def sends_packed(conn: psycopg.AsyncConnection[Any] | psycopg.Connection[Any]) -> bool:
    """Whether ``conn``, one of the store's own, sends packed arrays: they
    hold UTF-8, which only a UTF-8 session reads as such."""
    return conn.info.encoding == "utf-8"
