"""Validation and the JSON codec, property-tested without a database:
``prepare_object`` either raises ObjectError, exactly when the object holds
something Postgres' jsonb cannot store faithfully, or returns an encoding that
decodes back equal to the input."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, ClassVar

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

import trio_delta as delta
from trio_delta._objects import decode_object, prepare_object


@dataclass
class Blob:
    kind: ClassVar[str] = "blob"
    key: str
    value: Any = None

    def id(self) -> str:
        return self.key


@dataclass
class Keyed:
    kind: ClassVar[str] = "keyed"
    key: Any

    def id(self) -> Any:
        return self.key


# Text from every corner: plain, any code point including lone surrogates,
# and a small alphabet dense in the characters that matter to JSON and Postgres.
TEXT = st.one_of(
    st.text(),
    st.text(st.characters(codec=None, exclude_categories=())),
    st.text(alphabet='\x00\\u0a"\ud800\udfff\U0001f600/', max_size=12),
)
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(),
    TEXT,
)
JSONISH = st.recursive(
    SCALARS,
    lambda children: st.one_of(
        st.lists(children, max_size=5), st.dictionaries(TEXT, children, max_size=5)
    ),
    max_leaves=12,
)


def _bad_text(text: str) -> bool:
    return "\x00" in text or any(0xD800 <= ord(ch) <= 0xDFFF for ch in text)


def unstorable(value: Any) -> bool:
    """Whether ``value`` holds NUL, a lone surrogate or a non-finite float."""
    if isinstance(value, str):
        return _bad_text(value)
    if isinstance(value, float):
        return not math.isfinite(value)
    if isinstance(value, list):
        return any(unstorable(v) for v in value)
    if isinstance(value, dict):
        return any(_bad_text(k) or unstorable(v) for k, v in value.items())
    return False


def prepare(obj: Any, opts: delta.InformOpts | None = None) -> Any:
    return prepare_object(obj, opts, default_max_attempts=10)


@settings(max_examples=200, deadline=None)
@given(value=JSONISH)
@example(value="\x00")
@example(value="\\u0000")  # an escaped backslash, not a NUL: fine
@example(value="\\\x00")
@example(value={"\x00": 1})
@example(value=[float("nan")])
@example(value={"a": [None, float("inf")]})
@example(value="\ud800")
@example(value=2**64)
@example(value=-0.0)
def test_value_is_rejected_or_round_trips(value: Any) -> None:
    obj = Blob("key", value)
    try:
        prepared = prepare(obj)
    except delta.ObjectError:
        assert unstorable(value), f"rejected a storable value: {value!r}"
        return
    assert not unstorable(value), f"accepted an unstorable value: {value!r}"
    assert decode_object(prepared.encoded, Blob) == obj
    # plain JSON decoding (no controller for the kind) gives the same data
    assert decode_object(prepared.encoded, None) == {"key": "key", "value": value}
    assert prepared.kind == "blob"
    assert prepared.object_id == "key"
    # deterministic: the same object always has the same encoding and hash
    again = prepare(Blob("key", value))
    assert (again.encoded, again.hash) == (prepared.encoded, prepared.hash)


@settings(max_examples=100, deadline=None)
@given(data=st.dictionaries(st.text("abcxyz_-", max_size=5), st.integers(), min_size=2, max_size=8))
def test_encoding_is_canonical_whatever_the_key_order(data: dict[str, int]) -> None:
    reordered = dict(reversed(list(data.items())))
    assert list(reordered) != list(data)
    first, second = prepare(Blob("k", data)), prepare(Blob("k", reordered))
    assert first.encoded == second.encoded
    assert first.hash == second.hash


@settings(max_examples=200, deadline=None)
@given(object_id=st.one_of(TEXT, st.text(min_size=250, max_size=260)))
@example(object_id="")
@example(object_id="x" * 254)
@example(object_id="x" * 255)
def test_id_is_rejected_or_kept(object_id: str) -> None:
    valid = 1 <= len(object_id) <= 254 and not _bad_text(object_id)
    try:
        prepared = prepare(Keyed(object_id))
    except delta.ObjectError:
        assert not valid, f"rejected a valid id: {object_id!r}"
        return
    assert valid, f"accepted an invalid id: {object_id!r}"
    assert prepared.object_id == object_id
    assert decode_object(prepared.encoded, Keyed) == Keyed(object_id)


@pytest.mark.parametrize("object_id", [None, 1, b"bytes", ["x"]])
def test_id_must_be_text(object_id: Any) -> None:
    with pytest.raises(delta.ObjectError):
        prepare(Keyed(object_id))


TAG = st.text(st.characters(codec=None, exclude_categories=()), max_size=8)


@settings(max_examples=150, deadline=None)
@given(tags=st.lists(st.one_of(TAG, st.from_regex(r"\A\w[\w-]+\w\Z")), max_size=4))
@example(tags=["a"])
@example(tags=["ab"])
@example(tags=["abc"])
@example(tags=["-ab"])
def test_tags_are_validated(tags: list[str]) -> None:
    valid = all(re.fullmatch(r"\w[\w-]+\w", t) and len(t) <= 255 for t in tags)
    try:
        prepared = prepare(Blob("k"), delta.InformOpts(tags=tags))
    except delta.ObjectError:
        assert not valid, f"rejected valid tags {tags!r}"
        return
    assert valid, f"accepted invalid tags {tags!r}"
    assert prepared.tags == tuple(tags)
