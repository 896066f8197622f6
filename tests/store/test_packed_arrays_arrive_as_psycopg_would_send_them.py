"""The arrays a bulk inform packs itself (ids, objects, hashes) reach
Postgres exactly as the lists psycopg would encode: same values, same order,
any text Postgres can hold and any bytes."""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from trio_delta._store.postgres.columns import (
    can_send_packed,
    pack_bytea_array,
    pack_text_array,
)

# Postgres text holds any code point but NUL; UTF-8 cannot carry surrogates.
TEXT = st.text(st.characters(blacklist_categories=["Cs"], blacklist_characters="\x00"))


@pytest.fixture(scope="module")
def conn(pg_dsn: str) -> Iterator[psycopg.Connection[tuple[object, ...]]]:
    with psycopg.connect(pg_dsn, autocommit=True) as opened:
        can_send_packed(opened)
        yield opened


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(texts=st.lists(TEXT, min_size=1, max_size=40), blobs=st.lists(st.binary(), min_size=1))
@example(texts=['{"a": "ü\\"\\\\"}', "🙂" * 3000, ""], blobs=[b"\x00", b"", b"\xff" * 70000])
def test_packed_arrays_read_back_equal(
    conn: psycopg.Connection[tuple[object, ...]], texts: list[str], blobs: list[bytes]
) -> None:
    row = conn.execute(
        "select %(t)b::text[], %(b)b::bytea[], array_length(%(t)b::text[], 1)",
        {"t": pack_text_array([t.encode() for t in texts]), "b": pack_bytea_array(blobs)},
    ).fetchone()
    assert row == (texts, blobs, len(texts))


def test_a_packed_array_unnests_beside_a_list(conn: psycopg.Connection[tuple[object, ...]]) -> None:
    ids = [f"id-{i}" for i in range(5000)]
    rows = conn.execute(
        "select a, b from unnest(%(a)b::text[], %(b)b::text[]) as u(a, b)",
        {"a": pack_text_array([i.encode() for i in ids]), "b": ids},
    ).fetchall()
    assert rows == [(i, i) for i in ids]
