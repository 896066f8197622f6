"""Every named query is short enough, and has few enough parameters, for
psycopg to keep its parsed form: a longer one (the upsert with its comments
was) has its placeholders found again on every execute. Comment lines of
the query files are not sent."""

from __future__ import annotations

import re

import psycopg
import pytest
from psycopg import _queries as psycopg_queries  # pyright: ignore[reportPrivateUsage]

from trio_delta._store.queries import Queries

QUERIES = Queries("a_schema_name_of_the_longest_kind_anyone_would_use_for_this_x")
NAMES = sorted(QUERIES._composed)  # pyright: ignore[reportPrivateUsage]
PLACEHOLDER = re.compile(rb"%\((\w+)\)[sbt]")


@pytest.mark.parametrize("name", NAMES)
def test_the_query_fits_the_parse_cache(name: str) -> None:
    text = QUERIES[name].as_bytes(None)
    assert len(text) <= psycopg_queries.MAX_CACHED_STATEMENT_LENGTH
    assert len(set(PLACEHOLDER.findall(text))) <= psycopg_queries.MAX_CACHED_STATEMENT_PARAMS
    assert not any(line.lstrip().startswith(b"--") for line in text.splitlines())


def test_the_upserts_parsing_is_reused(pg_dsn: str) -> None:
    with psycopg.connect(pg_dsn) as conn:
        query = QUERIES["upsert"].as_bytes(conn)
        names = {n.decode() for n in PLACEHOLDER.findall(query)}
        params = dict.fromkeys(names)
        convert = psycopg_queries.PostgresQuery(psycopg.adapt.Transformer(conn))
        convert.convert(query, params)
        hits = psycopg_queries._query2pg.cache_info().hits  # pyright: ignore[reportPrivateUsage]
        convert.convert(query, params)
        assert psycopg_queries._query2pg.cache_info().hits == hits + 1  # pyright: ignore[reportPrivateUsage]
