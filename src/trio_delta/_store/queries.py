"""Every SQL statement trio_delta runs, kept as package data in ``sql/*.sql``.

Each file holds ``-- name: NAME`` blocks (a statement) and ``-- fragment:
NAME`` blocks (text a statement, or a later fragment, includes as ``{NAME}``). One loader, one
composition for every caller: the Postgres store's parts and the producer
functions all read their statements from :class:`Queries`.
"""

from __future__ import annotations

import re
from functools import cache
from importlib import resources

from psycopg import sql
from psycopg.abc import AdaptContext

#: The resource columns, in :class:`~trio_delta.ResourceRow`'s field order.
RESOURCE_COLUMNS = (
    "r.id, r.kind, r.object_id, r.namespace, r.state, r.attempt, r.max_attempts, "
    "r.object::text as object, r.hash, r.metadata::text as metadata, r.tags, "
    "r.errors::text as errors, r.created_at, "
    "r.updated_at, r.scheduled_at, r.attempted_at, r.attempted_by, r.synced_at, "
    "r.priority, r.snoozes"
)

#: The query files, in the package's ``sql/`` folder.
QUERY_FILES = ("queries.sql", "insights.sql")

_BLOCK_LINE = re.compile(r"^-- (name|fragment): (\w+)\s*$", re.MULTILINE)


def parse_named_queries(text: str) -> dict[tuple[str, str], str]:
    """Split ``text`` into ``{(block, name): sql}`` at ``-- name: NAME`` and
    ``-- fragment: NAME`` lines (block is ``name`` or ``fragment``)."""
    parts = _BLOCK_LINE.split(text)
    # parts = [preamble, block1, name1, body1, block2, name2, body2, ...]
    blocks: dict[tuple[str, str], str] = {}
    for block, name, body in zip(parts[1::3], parts[2::3], parts[3::3], strict=True):
        if (block, name) in blocks:
            raise ValueError(f"{block} {name!r} is defined twice")
        blocks[(block, name)] = body.strip()
    return blocks


def _without_comment_lines(body: str) -> str:
    """``body`` less its comment lines: they are for readers of the files.
    Sent along, they made the upsert longer than psycopg caches the parsing
    of (4 KB: a statement's placeholders were found again on every execute,
    ~0.2 ms of a single inform's client time) and gave the server more to
    read. (No statement here puts ``--`` inside a string.)"""
    return "\n".join(line for line in body.splitlines() if not line.lstrip().startswith("--"))


@cache
def _raw_blocks() -> dict[tuple[str, str], str]:
    folder = resources.files("trio_delta._store").joinpath("sql")
    blocks: dict[tuple[str, str], str] = {}
    for file in QUERY_FILES:
        for key, body in parse_named_queries(folder.joinpath(file).read_text("utf-8")).items():
            if key in blocks:
                raise ValueError(f"{key[0]} {key[1]!r} is defined in two query files")
            blocks[key] = _without_comment_lines(body)
    # A fragment may include the fragments defined before it: spliced in as
    # text here (all of it package data), so that each block is composed once.
    done: dict[str, str] = {}
    for (block, name), body in blocks.items():
        if block == "fragment":
            for earlier, text in done.items():
                body = body.replace("{" + earlier + "}", text)
            blocks[(block, name)] = done[name] = body
    return blocks


class Queries:
    """The named queries composed for one schema (an identifier, never text)."""

    def __init__(self, schema: str) -> None:
        ident = sql.Identifier(schema)
        columns = sql.SQL(RESOURCE_COLUMNS)  # a constant of ours, not user data
        raw = _raw_blocks()
        fragments = {
            name: sql.SQL(body).format(schema=ident, columns=columns)  # pyright: ignore[reportArgumentType]
            for (block, name), body in raw.items()
            if block == "fragment"
        }
        self._composed: dict[str, NamedQuery] = {
            name: NamedQuery(sql.SQL(body).format(schema=ident, columns=columns, **fragments))  # pyright: ignore[reportArgumentType]
            for (block, name), body in raw.items()
            if block == "name"
        }

    def __getitem__(self, name: str) -> NamedQuery:
        return self._composed[name]


class NamedQuery(sql.Composed):
    """A named query composed for one schema, rendered to bytes once per
    client encoding: psycopg renders a composed query again on every
    execute, escaping each identifier (a few per cent of a single inform).
    The encoding alone decides the bytes: only the schema's identifier and
    constant text are composed in (no literal, whose rendering would also
    depend on the connection's adapters)."""

    def __init__(self, composed: sql.Composed) -> None:
        super().__init__(list(composed))
        self._rendered: dict[str, bytes] = {}

    def as_bytes(self, context: AdaptContext | None = None) -> bytes:
        conn = None if context is None else context.connection
        encoding = "utf-8" if conn is None else conn.info.encoding
        rendered = self._rendered.get(encoding)
        if rendered is None:
            rendered = self._rendered[encoding] = super().as_bytes(context)
        return rendered
