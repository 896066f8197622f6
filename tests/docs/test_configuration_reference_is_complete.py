"""docs/configuration.md documents every configuration field with its true default."""

from __future__ import annotations

import ast
import dataclasses
import re
from pathlib import Path

import pytest

import trio_delta as delta

PAGE = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"
CLASSES = [delta.Config, delta.NamespaceConfig, delta.ObjectSettings]
ROW = re.compile(r"^\|\s*`(?P<field>\w+)`\s*\|\s*(?P<default>[^|]*)\|(?P<meaning>.*)\|\s*$")


def documented(cls: type) -> dict[str, tuple[str, str]]:
    """The table rows of ``## ClassName``: field -> (default cell, meaning cell)."""
    sections = re.split(r"^## ", PAGE.read_text(), flags=re.M)
    (section,) = [s for s in sections if s.split("\n", 1)[0].strip() == cls.__name__]
    rows: dict[str, tuple[str, str]] = {}
    for line in section.splitlines():
        match = ROW.match(line)
        if match:
            rows[match["field"]] = (match["default"].strip(), match["meaning"].strip())
    return rows


def shown_default(cell: str) -> str:
    match = re.match(r"`([^`]+)`", cell)
    assert match, f"the default {cell!r} does not start with a code span"
    return match[1]


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_every_field_is_documented_and_nothing_else(cls: type) -> None:
    fields = [f.name for f in dataclasses.fields(cls)]
    rows = documented(cls)
    missing = [name for name in fields if name not in rows]
    assert not missing, f"{PAGE.name}: fields of {cls.__name__} not documented: {missing}"
    unknown = [name for name in rows if name not in fields]
    assert not unknown, f"{PAGE.name}: {cls.__name__} has no fields {unknown}"
    empty = [name for name, (_, meaning) in rows.items() if len(meaning) < 10]
    assert not empty, f"{PAGE.name}: {cls.__name__} fields without a meaning: {empty}"


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_documented_defaults_are_the_real_ones(cls: type) -> None:
    rows = documented(cls)
    for field in dataclasses.fields(cls):
        if field.name not in rows:
            continue  # reported by the test above
        shown = shown_default(rows[field.name][0])
        if field.default_factory is not dataclasses.MISSING:
            factory = field.default_factory
            name = f"{factory.__module__}.{factory.__qualname__}()"
            assert shown == name, f"{cls.__name__}.{field.name}: shown {shown!r}, is {name!r}"
        elif callable(field.default):
            assert shown == field.default.__name__, f"{cls.__name__}.{field.name}: {shown!r}"
        else:
            value = ast.literal_eval(shown)
            real = (type(field.default), field.default)
            assert (type(value), value) == real, (
                f"{cls.__name__}.{field.name}: documented default {shown}, "
                f"real default {field.default!r}"
            )
