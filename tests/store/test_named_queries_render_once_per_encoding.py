"""A named query is rendered to bytes once per client encoding, and each
rendering is what psycopg would make of the composed query itself."""

from __future__ import annotations

import psycopg
from psycopg import sql

from trio_delta._store.queries import Queries


def test_each_encoding_gets_the_composed_rendering_once(pg_dsn: str) -> None:
    queries = Queries("td_render_check")
    query = queries["upsert"]
    composed = sql.Composed(list(query))
    with (
        psycopg.connect(pg_dsn) as utf8,
        psycopg.connect(pg_dsn, client_encoding="LATIN1") as latin1,
    ):
        for conn in (utf8, latin1):
            first = query.as_bytes(conn)
            assert first == composed.as_bytes(conn)
            assert query.as_bytes(conn) is first  # kept, not rendered again
        assert utf8.info.encoding != latin1.info.encoding
        # Executed as it stands: psycopg takes it for a composed query.
        assert utf8.execute(queries["database_now"]).fetchone() is not None
