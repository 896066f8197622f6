"""Named SQL queries, kept as package data in ``sql/queries.sql``."""

from __future__ import annotations

import re
from functools import cache
from importlib import resources
from typing import LiteralString

from psycopg import sql

RESOURCE_COLUMNS = (
    "r.id, r.kind, r.object_id, r.namespace, r.state, r.attempt, r.max_attempts, "
    "r.object::text as object, r.hash, r.metadata, r.tags, r.errors, r.created_at, "
    "r.updated_at, r.scheduled_at, r.attempted_at, r.attempted_by, r.synced_at"
)

#: (returning clause, final select) of each form of the upsert query.
_UPSERT_FORMS: dict[str, tuple[LiteralString, LiteralString]] = {
    "upsert": (
        "{columns}, (r.xmax = 0) as inserted",
        "select upserted.* from upserted, (select count(*) from notified) as n",
    ),
    "upsert_quiet": (
        "r.namespace, r.state",
        "select (select count(*) from upserted), (select count(*) from notified)",
    ),
}

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
        raw = _raw_queries()
        self._composed: dict[str, sql.Composed] = {
            name: sql.SQL(body).format(schema=ident, columns=columns)  # pyright: ignore[reportArgumentType]
            for name, body in raw.items()
            if name != "upsert"
        }
        # One upsert text, two forms: the rows back (inform) or only a count
        # (informer batches, where returning every object's JSON is waste).
        for name, (returning, result) in _UPSERT_FORMS.items():
            self._composed[name] = sql.SQL(raw["upsert"]).format(  # pyright: ignore[reportArgumentType]
                schema=ident,
                upsert_returning=sql.SQL(returning).format(columns=columns),
                upsert_result=sql.SQL(result),
            )

    def __getitem__(self, name: str) -> sql.Composed:
        return self._composed[name]
