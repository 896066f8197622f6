"""Named SQL queries, kept as package data in ``sql/queries.sql``."""

from __future__ import annotations

import re
from functools import cache
from importlib import resources

from psycopg import sql

RESOURCE_COLUMNS = (
    "r.id, r.kind, r.object_id, r.namespace, r.state, r.attempt, r.max_attempts, "
    "r.object::text as object, r.hash, r.metadata::text as metadata, r.tags, "
    "r.errors::text as errors, r.created_at, "
    "r.updated_at, r.scheduled_at, r.attempted_at, r.attempted_by, r.synced_at"
)

_NAME_LINE = re.compile(r"^-- name: (\w+)\s*$", re.MULTILINE)


def parse_named_queries(text: str) -> dict[str, str]:
    """Split ``text`` into ``{name: sql}`` at ``-- name: NAME`` lines."""
    parts = _NAME_LINE.split(text)
    # parts = [preamble, name1, body1, name2, body2, ...]
    queries: dict[str, str] = {}
    for name, body in zip(parts[1::2], parts[2::2], strict=True):
        if name in queries:
            raise ValueError(f"query {name!r} is defined twice")
        queries[name] = body.strip()
    return queries


@cache
def _raw_queries() -> dict[str, str]:
    text = resources.files("trio_delta._store").joinpath("sql/queries.sql").read_text("utf-8")
    return parse_named_queries(text)


class Queries:
    """The named queries composed for one schema (an identifier, never text)."""

    def __init__(self, schema: str) -> None:
        ident = sql.Identifier(schema)
        columns = sql.SQL(RESOURCE_COLUMNS)  # a constant of ours, not user data
        self._composed: dict[str, sql.Composed] = {
            name: sql.SQL(body).format(schema=ident, columns=columns)  # pyright: ignore[reportArgumentType]
            for name, body in _raw_queries().items()
        }

    def __getitem__(self, name: str) -> sql.Composed:
        return self._composed[name]
