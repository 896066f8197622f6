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
