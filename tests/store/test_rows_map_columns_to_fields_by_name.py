"""Rows are built positionally on the hot path (keyword arguments cost ~2 us
a row); these tests fail if a column list and a field list drift apart,
which the type checker cannot see for neighbouring fields of one type."""

from __future__ import annotations

import dataclasses
import json
import re
from datetime import UTC, datetime, timedelta

from trio_delta import ResourceRow
from trio_delta._store.memory.tables import StoredRow
from trio_delta._store.postgres import load_json, row_from_columns
from trio_delta._store.queries import RESOURCE_COLUMNS
from trio_delta._types import AttemptError, ResourceState

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def column_names() -> list[str]:
    """Column names of RESOURCE_COLUMNS, as the query returns them."""
    names = []
    for part in RESOURCE_COLUMNS.split(","):
        part = part.strip()
        alias = re.search(r"\bas (\w+)$", part)
        names.append(alias.group(1) if alias else part.removeprefix("r."))
    return names


def test_row_from_columns_reads_each_column_into_its_field() -> None:
    names = column_names()
    values = {
        "id": 7,
        "kind": "kind-x",
        "object_id": "oid-x",
        "namespace": "ns-x",
        "state": "pending",
        "attempt": 2,
        "max_attempts": 9,
        "object": '{"a":1}',
        "hash": b"hash",
        "metadata": '{"m": 1}',
        "tags": ["t1", "t2"],
        "errors": json.dumps([{"at": T0.isoformat(), "attempt": 1, "error": "E", "trace": "tb"}]),
        "created_at": T0,
        "updated_at": T0 + timedelta(seconds=1),
        "scheduled_at": T0 + timedelta(seconds=2),
        "attempted_at": T0 + timedelta(seconds=3),
        "attempted_by": "client-x",
        "synced_at": T0 + timedelta(seconds=4),
        "priority": 5,
        "snoozes": 6,
    }
    assert sorted(names) == sorted(values)
    row = row_from_columns(tuple(values[n] for n in names))
    assert row == ResourceRow(
        id=7,
        kind="kind-x",
        object_id="oid-x",
        namespace="ns-x",
        state=ResourceState.PENDING,
        attempt=2,
        max_attempts=9,
        encoded_object=b'{"a":1}',
        hash=b"hash",
        metadata={"m": 1},
        tags=("t1", "t2"),
        errors=(AttemptError(at=T0, attempt=1, error="E", trace="tb"),),
        created_at=T0,
        updated_at=T0 + timedelta(seconds=1),
        scheduled_at=T0 + timedelta(seconds=2),
        attempted_at=T0 + timedelta(seconds=3),
        attempted_by="client-x",
        synced_at=T0 + timedelta(seconds=4),
        priority=5,
        snoozes=6,
    )


def test_memory_snapshots_copy_every_field_by_name() -> None:
    # Every field a distinct value, so a swap of two neighbours shows.
    row: ResourceRow[object] = ResourceRow(
        id=1,
        kind="k",
        object_id="o",
        namespace="n",
        state=ResourceState.PENDING,
        attempt=3,
        max_attempts=4,
        encoded_object=b"{}",
        hash=b"h",
        metadata={"x": 1},
        tags=("t",),
        errors=(),
        created_at=T0,
        updated_at=T0 + timedelta(seconds=1),
        scheduled_at=T0 + timedelta(seconds=2),
        attempted_at=T0 + timedelta(seconds=3),
        attempted_by="me",
        synced_at=T0 + timedelta(seconds=4),
        priority=5,
        snoozes=6,
    )
    snapshot = StoredRow(row, b'{"x": 1}').snapshot()
    for field in dataclasses.fields(ResourceRow):
        assert getattr(snapshot, field.name) == getattr(row, field.name), field.name
    assert snapshot.metadata is not row.metadata  # each snapshot its own mapping


def test_object_decodes_once_on_first_use() -> None:
    row: ResourceRow[object] = ResourceRow(
        1,
        "k",
        "o",
        "n",
        ResourceState.SYNCED,
        1,
        1,
        b'{"a": [1]}',
        b"h",
        {},
        (),
        (),
        T0,
        T0,
        T0,
        None,
        None,
        None,
    )
    assert row.object == {"a": [1]}
    assert row.object is row.object


def test_empty_metadata_and_errors_are_read_without_decoding() -> None:
    names = column_names()
    row = dict.fromkeys(names) | {
        "id": 1,
        "kind": "k",
        "object_id": "o",
        "namespace": "n",
        "state": "no-such-state",
        "attempt": 0,
        "max_attempts": 1,
        "object": "{}",
        "hash": b"",
        "metadata": "{}",
        "tags": [],
        "errors": "[]",
        "created_at": T0,
        "updated_at": T0,
        "scheduled_at": T0,
    }
    read = row_from_columns(tuple(row[n] for n in names))
    assert read.metadata == {}
    assert read.errors == ()
    assert read.state is ResourceState.UNKNOWN  # a state from a newer version


def test_json_from_the_database_loads_like_the_standard_library() -> None:
    assert load_json(b'{"a": [1, 2.5, null, true], "b": "\\u00e9"}') == {
        "a": [1, 2.5, None, True],
        "b": "\u00e9",
    }
    # Postgres' json type keeps these; msgspec refuses them: the fallback reads them.
    assert load_json(b"[1e400]") == [float("inf")]
    assert load_json(b'["\\ud800"]') == ["\ud800"]
    assert load_json(b"[123456789012345678901234567890]") == [123456789012345678901234567890]
