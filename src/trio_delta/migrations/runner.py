"""Apply the versioned SQL files of this package to a schema.

Files are named ``NNNN_description.sql``; each runs once, in order, inside
one transaction that holds an advisory lock, so two processes migrating at
once simply take turns.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from importlib import resources

from .._errors import NotMigratedError

_FILE = re.compile(r"\A(\d{4})_(\w+)\.sql\Z")


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: str


@cache
def migrations() -> tuple[Migration, ...]:
    found: list[Migration] = []
    for entry in resources.files("trio_delta.migrations").iterdir():
        match = _FILE.match(entry.name)
        if match:
            found.append(Migration(int(match[1]), match[2], entry.read_text("utf-8")))
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if versions != list(range(1, len(found) + 1)):
        raise RuntimeError(f"migration versions must be 1..N without gaps, got {versions}")
    return tuple(found)


LATEST_VERSION = len(migrations())


@cache
def fresh_schema() -> str:
    """The whole schema at :data:`LATEST_VERSION` (``schema.sql``): what a
    schema without tables gets, in one step instead of every migration."""
    return resources.files("trio_delta.migrations").joinpath("schema.sql").read_text("utf-8")


def missing_migrations(version: int | None) -> list[Migration]:
    """The migrations a schema at ``version`` (None: no tables) lacks."""
    return [m for m in migrations() if m.version > (version or 0)]


def check_version(version: int | None, schema: str) -> None:
    """Raise :class:`NotMigratedError`, saying how to fix it, unless a schema
    at ``version`` (None: no tables) has every migration of this library. A
    schema ahead of the library passes: its extra migrations are a newer
    library's, and they only add."""
    fix = (
        f"run `trio-delta migrate --dsn DSN --schema {schema}` "
        f"or `await trio_delta.migrate(dsn, schema={schema!r})`"
    )
    if not version:
        raise NotMigratedError(f"schema {schema!r} has no trio_delta tables: {fix}")
    if version < LATEST_VERSION:
        raise NotMigratedError(
            f"schema {schema!r} is at version {version}, this library needs {LATEST_VERSION}: {fix}"
        )
