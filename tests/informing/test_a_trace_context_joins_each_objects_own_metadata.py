"""The trace context an inform stores goes into each object's metadata,
beside (never over) the application's own keys, and nothing else of the
object changes."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

import msgspec

from trio_delta._informing import with_metadata
from trio_delta._objects import PreparedObject


def _every_field_set(metadata: bytes) -> PreparedObject:
    """A PreparedObject whose every field holds a value no default has:
    built from the dataclass's own fields, so a field added later is
    checked too."""
    values: dict[str, object] = {}
    for i, field in enumerate(dataclasses.fields(PreparedObject)):
        if field.name == "metadata":
            values[field.name] = metadata
        elif field.name in ("created_at", "run_at"):
            values[field.name] = datetime(2026, 1, 1 + i, tzinfo=UTC)
        elif field.name == "priority_set":
            values[field.name] = True
        elif field.name == "tags":
            values[field.name] = (f"tag-{i}",)
        elif field.name in ("max_attempts", "priority"):
            values[field.name] = 100 + i
        elif field.name in ("encoded", "hash"):
            values[field.name] = f"bytes-{i}".encode()
        else:
            values[field.name] = f"value-{i}"
    return PreparedObject(**values)  # type: ignore[arg-type]


def test_each_object_keeps_its_own_keys_and_gains_the_context() -> None:
    plain = _every_field_set(b"{}")
    own = _every_field_set(msgspec.json.encode({"traceparent": "mine", "team": "a"}))
    other = _every_field_set(b"{}")
    context = {"traceparent": "00-abc-def-01", "tracestate": "k=v"}

    out = with_metadata([plain, own, other], context)

    assert [msgspec.json.decode(o.metadata) for o in out] == [
        context,
        {"traceparent": "mine", "team": "a", "tracestate": "k=v"},
        context,
    ]
    for before, after in zip([plain, own, other], out, strict=True):
        for field in dataclasses.fields(PreparedObject):
            if field.name != "metadata":
                assert getattr(after, field.name) == getattr(before, field.name), field.name
        assert after is not before
    # The originals are left as they were.
    assert plain.metadata == b"{}"
