"""A dashboard action changes what its confirmation page counted, or
nothing: a selection that changed in between is shown again; no filter at
all needs an explicit "every resource"; cancel touches running work only;
odd input is a 400, never a 500."""

from __future__ import annotations

import base64
import re

import httpx
import psycopg
import pytest

import trio_delta as delta
from trio_delta import producer
from trio_delta.ui import open_dashboard

from ..conftest import sql
from .dashboards import Order, http, served


def inform(dsn: str, schema: str, keys: list[str]) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        producer.inform_many(conn, [Order(k) for k in keys], schema=schema)


async def csrf_of(url: str) -> str:
    page = await http("GET", url + "/resources")
    match = re.search(r'name="csrf" value="([0-9a-f]+)"', page.text)
    assert match is not None
    return match.group(1)


async def test_a_selection_that_grew_is_shown_again_not_applied(pg_dsn: str, schema: str) -> None:
    inform(pg_dsn, schema, [f"a-{i}" for i in range(3)])
    async with served(pg_dsn, schema) as url:
        form = {"csrf": await csrf_of(url), "action": "delete", "kind": "order"}
        first = await http("POST", url + "/actions", data=form)
        assert "3 resources match" in first.text
        expected = re.search(r'name="expected" value="(\d+)"', first.text)
        assert expected is not None
        assert expected.group(1) == "3"

        inform(pg_dsn, schema, ["a-3", "a-4"])  # arrived while the page was open
        confirm = {**form, "confirmed": "yes", "expected": "3"}
        again = await http("POST", url + "/actions", data=confirm)
        assert again.status_code == 200
        assert "The selection changed since it was counted" in again.text
        assert "5 resources match" in again.text
        states = sql(pg_dsn, f"select distinct state from {schema}.resources")
        assert states == [("scheduled",)]

        done = await http("POST", url + "/actions", data={**confirm, "expected": "5"})
        assert "Delete: 5 resources changed." in done.text
        # Sent again (a reload of the result page): nothing matches now.
        reload = await http("POST", url + "/actions", data={**confirm, "expected": "5"})
        assert "0 resources match" in reload.text
        assert "Nothing to do" in reload.text


async def test_no_filter_needs_every_resource_ticked(pg_dsn: str, schema: str) -> None:
    inform(pg_dsn, schema, ["b-1", "b-2"])
    async with served(pg_dsn, schema) as url:
        csrf = await csrf_of(url)
        listing = await http("GET", url + "/resources")
        assert 'id="everything"' in listing.text
        unticked = await http(
            "POST", url + "/actions", data={"csrf": csrf, "action": "delete", "confirmed": "yes"}
        )
        assert unticked.status_code == 400
        assert "tick &#39;every resource&#39;" in unticked.text
        ticked = await http(
            "POST", url + "/actions", data={"csrf": csrf, "action": "delete", "everything": "yes"}
        )
        assert "Delete ALL 2 resources?" in ticked.text
        assert "with no filter: <strong>every resource</strong>" in ticked.text
    assert sql(pg_dsn, f"select count(*) from {schema}.resources where state = 'deleted'") == [(0,)]


async def test_cancel_touches_only_running_work(pg_dsn: str, schema: str) -> None:
    inform(pg_dsn, schema, ["c-1"])
    async with served(pg_dsn, schema) as url:
        form = {"csrf": await csrf_of(url), "action": "cancel", "kind": "order"}
        page = await http("POST", url + "/actions", data=form)
        assert (
            "0 resources match the filters kind=order in the states cancel acts on (pending)"
            in (page.text)
        )
        resource = await http("GET", url + "/resource?kind=order&id=c-1")
        assert 'value="cancel"' not in resource.text  # scheduled: delete, not cancel
        assert 'value="delete"' in resource.text


async def test_an_object_id_with_a_line_break_is_acted_on_exactly(pg_dsn: str, schema: str) -> None:
    inform(pg_dsn, schema, ["x\ny", "x\r\ny"])
    async with served(pg_dsn, schema) as url:
        page = await http("GET", url + "/resource", params={"kind": "order", "id": "x\ny"})
        oid = re.search(r'name="oid" value="([^"]+)"', page.text)
        assert oid is not None
        assert base64.urlsafe_b64decode(oid.group(1)) == b"x\ny"
        form = {
            "csrf": await csrf_of(url),
            "action": "delete",
            "kind": "order",
            "oid": oid.group(1),
        }
        done = await http(
            "POST", url + "/actions", data={**form, "confirmed": "yes", "expected": "1"}
        )
        assert "Delete: 1 resource changed." in done.text
    rows = sql(pg_dsn, f"select object_id, state from {schema}.resources order by 1")
    assert rows == [("x\ny", "deleted"), ("x\r\ny", "scheduled")]


@pytest.mark.parametrize(
    "path",
    [
        "/resources?after=%C2%B2",
        "/resources?after=-1",
        "/resources?q=%00",
        "/resources?tag=%00",
        "/resources?kind=order&id=a",
        "/resources?state=sleeping",
        "/resources?kind=Bad%20Kind",
        "/resource?kind=%00&id=a",
        "/resource?kind=order&id=%00",
        "/resource?kind=order",
    ],
)
async def test_odd_input_is_a_bad_request(pg_dsn: str, schema: str, path: str) -> None:
    async with served(pg_dsn, schema) as url:
        response = await http("GET", url + path)
    assert response.status_code == 400, response.text


async def test_embedded_without_a_secret_answers_only_loopback_names(
    pg_dsn: str, schema: str
) -> None:
    async with open_dashboard(pg_dsn, schema=schema) as app:
        transport = httpx.ASGITransport(app=app)  # pyright: ignore[reportArgumentType]
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
            assert (await client.get("/")).status_code == 200
            rebound = await client.get("/", headers={"host": "evil.example"})
            assert rebound.status_code == 421
            assert rebound.headers["content-type"].startswith("text/plain")


async def test_a_short_token_is_refused(pg_dsn: str, schema: str) -> None:
    with pytest.raises(delta.ConfigError, match="at least 16 characters"):
        async with open_dashboard(pg_dsn, schema=schema, token="short"):
            pass
