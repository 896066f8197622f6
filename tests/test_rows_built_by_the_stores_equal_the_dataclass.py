"""The stores build rows through ``build_row`` (faster than the frozen
dataclass's ``__init__``); a row built that way is the same row."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

import pytest

from trio_delta import ResourceRow, ResourceState
from trio_delta._types import AttemptError, build_row


def _distinct_values() -> tuple[object, ...]:
    at = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    return (
        41,
        "order",
        "order-7",
        "billing",
        ResourceState.FAILED,
        3,
        9,
        b'{"id": 7}',
        b"\x01\x02",
        {"trace": "abc"},
        ("blue", "big"),
        (AttemptError(at=at, attempt=2, error="boom", trace="tb"),),
        at,
        at + timedelta(seconds=1),
        at + timedelta(seconds=2),
        at + timedelta(seconds=3),
        "client-1",
        at + timedelta(seconds=4),
        5,
        2,
    )


def test_a_built_row_has_every_field_where_the_dataclass_puts_it() -> None:
    values = _distinct_values()
    built = build_row(*values)
    made = ResourceRow(*values)
    assert built == made
    assert repr(built) == repr(made)
    names = [f.name for f in dataclasses.fields(ResourceRow) if f.name != "_decoded"]
    assert len(names) == len(values)
    for name, value in zip(names, values, strict=True):
        assert getattr(built, name) == value, name
    assert built.object == {"id": 7}  # decoded on first use, as a made row is


def test_a_built_row_is_as_frozen_as_a_made_one() -> None:
    built = build_row(*_distinct_values())
    with pytest.raises(dataclasses.FrozenInstanceError):
        built.state = ResourceState.SYNCED  # type: ignore[misc]


def test_build_row_takes_exactly_the_fields() -> None:
    with pytest.raises(TypeError):
        build_row(*_distinct_values()[:-1])
