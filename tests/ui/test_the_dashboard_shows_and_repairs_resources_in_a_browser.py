"""The dashboard in a real headless Chromium, against real Postgres with a
running client: counts, filters, a retry the client then works, live
counts without a reload, bulk actions with their count first, pauses, and
an object id full of HTML shown as text."""

from __future__ import annotations

import httpx
import trio

import trio_delta as delta

from ..conftest import sql
from ..models import wait_for_state
from .browser import Browser
from .dashboards import Order, OrderController, order_controllers, served

S = delta.ResourceState
HOSTILE = "<img src=x onerror=\"document.title='pwned'\">&amp;"


async def test_overview_filters_retry_and_live_counts(
    pg_dsn: str, schema: str, config: delta.Config, browser: Browser
) -> None:
    controller = OrderController()
    controller.broken = {"bad-1"}
    controllers = order_controllers(controller)
    async with (
        delta.open_delta_client(pg_dsn, controllers, config=config) as client,
        served(pg_dsn, schema) as url,
    ):
        keys = ["good-1", "good-2", "good-3", "bad-1", HOSTILE]
        await client.inform_many([Order(k) for k in keys])
        for key in keys:
            await wait_for_state(client, "order", key, S.DEGRADED if key == "bad-1" else S.SYNCED)

        # The overview shows what the database holds.
        await browser.get(url + "/")
        row = 'tr[data-kind="order"][data-namespace="default"]'
        assert await browser.text(f'{row} td[data-state="synced"]') == "4"
        assert await browser.text(f'{row} td[data-state="degraded"]') == "1"
        assert await browser.text('tfoot [data-total="total"]') == "5"
        await browser.wait_for_text("#leader", lambda text: client.id in text)

        # Live: more work is counted without reloading the page.
        loaded_at = await browser.script("return document.body.dataset.loadedAt")
        await client.inform_many([Order(f"later-{i}") for i in range(3)])
        await browser.wait_for_text(f'{row} td[data-state="synced"]', "7")
        assert await browser.script("return document.body.dataset.loadedAt") == loaded_at

        # A filter narrows the list; the hostile id is text, not markup.
        await browser.get(url + "/resources")
        listed = await browser.find_all("#resources tbody tr[data-object-id]")
        assert len(listed) == 8
        assert await browser.find_all("#resources img") == []
        assert await browser.script("return document.title") != "pwned"
        await browser.type('input[name="q"]', "good")
        await browser.click("#filters button")
        await browser.wait_for_url(lambda url: "q=good" in url)
        ids = [await browser.run(lambda e=e: e.text) for e in await browser.find_all("a.object-id")]
        assert ids == ["good-1", "good-2", "good-3"]
        await browser.get(url + "/resources?state=degraded")
        ids = [await browser.run(lambda e=e: e.text) for e in await browser.find_all("a.object-id")]
        assert ids == ["bad-1"]
        await browser.get(url + "/resources?q=onerror")
        (link,) = await browser.find_all("a.object-id")
        assert await browser.run(lambda: link.text) == HOSTILE
        await browser.run(link.click)
        assert await browser.text("#object-id") == HOSTILE
        assert await browser.find_all("img") == []

        # Retry from the resource page: confirmed, scheduled, then worked.
        controller.broken.clear()
        await browser.get(url + "/resource?kind=order&id=bad-1")
        assert await browser.text("#state") == "degraded"
        assert "payment API refused bad-1" in await browser.text("#errors")
        await browser.click('#actions button[value="retry"]')
        assert "1 resource matches" in await browser.text("#count")
        assert (await client.get_resource("order", "bad-1")).state is S.DEGRADED  # type: ignore[union-attr]
        await browser.click("#confirm button")
        assert await browser.text("#done") == "Retry: 1 resource changed."
        assert "order bad-1 → scheduled" in await browser.text("main ul")
        synced = await wait_for_state(client, "order", "bad-1", S.SYNCED)
        assert (synced.attempt, synced.errors) == (1, ())


async def test_bulk_actions_show_the_count_first_and_pauses_reach_the_client(
    pg_dsn: str, schema: str, config: delta.Config, browser: Browser
) -> None:
    controller = OrderController()
    async with (
        delta.open_delta_client(pg_dsn, order_controllers(controller), config=config) as client,
        served(pg_dsn, schema) as url,
    ):
        await client.inform_many([Order(f"o-{i}") for i in range(12)])
        for i in range(12):
            await wait_for_state(client, "order", f"o-{i}", S.SYNCED)

        # Invalidate every synced order whose id contains "o-1": o-1, o-10, o-11.
        await browser.get(url + "/resources?q=o-1&state=synced")
        await browser.click('#bulk button[value="invalidate"]')
        assert "3 resources match" in await browser.text("#count")
        assert sql(pg_dsn, f"select count(*) from {schema}.resources where state = 'synced'") == [
            (12,)
        ]
        await browser.click("#confirm button")
        assert await browser.text("#done") == "Invalidate: 3 resources changed."
        for key in ("o-1", "o-10", "o-11"):
            row = await wait_for_state(client, "order", key, S.SYNCED)
            assert row.attempt == 1  # worked again, from a fresh start

        # Pause from the overview: the client claims nothing of the kind.
        await browser.get(url + "/")
        await browser.click('tr[data-kind="order"] button[value="pause"]')
        await browser.click("#confirm button")
        assert await browser.text("#done") == "Paused: kind order in namespace default."
        assert [(p.kind, p.namespace) for p in await client.list_pauses()] == [("order", "default")]
        await client.inform(Order("while-paused"))
        with trio.move_on_after(1.0):
            await wait_for_state(client, "order", "while-paused", S.SYNCED)
            raise AssertionError("a paused kind was worked")
        await browser.get(url + "/")
        assert "kind order in namespace default" in await browser.text("#paused")
        await browser.click('#paused button[value="resume"]')
        await browser.click("#confirm button")
        assert await browser.text("#done") == "Resumed: kind order in namespace default."
        await wait_for_state(client, "order", "while-paused", S.SYNCED)


async def test_a_read_only_dashboard_offers_and_takes_no_action(
    pg_dsn: str, schema: str, config: delta.Config, browser: Browser
) -> None:
    controller = OrderController()
    controller.broken = {"bad"}
    async with (
        delta.open_delta_client(pg_dsn, order_controllers(controller), config=config) as client,
        served(pg_dsn, schema, read_only=True) as url,
    ):
        await client.inform(Order("bad"))
        await wait_for_state(client, "order", "bad", S.DEGRADED)
        for page in ("/", "/resources", "/resource?kind=order&id=bad"):
            await browser.get(url + page)
            assert await browser.find_all("main form[method=post]") == [], page
            assert "read-only" in await browser.text("header")
        # A hand-made POST is refused too, with the right CSRF token or not.
        refused = await trio.to_thread.run_sync(
            lambda: httpx.post(
                url + "/actions",
                data={"action": "retry", "kind": "order", "id": "bad", "confirmed": "yes"},
            )
        )
        assert refused.status_code == 403
        assert "read-only" in refused.text
    assert sql(pg_dsn, f"select state from {schema}.resources") == [("degraded",)]
