"""Take the dashboard screenshots the docs show (`nox -s screenshots`).

Fills a scratch schema with a few kinds of resources, runs a client that
syncs most and fails some for good, serves the dashboard, and saves the
overview and one resource page from headless Chromium (Debian's chromium
and chromium-driver packages) into docs/images/.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import ClassVar

import psycopg
import trio
from selenium import webdriver
from selenium.webdriver.chrome.service import Service

import trio_delta as delta
from trio_delta.ui import serve_dashboard

DSN = os.environ.get("TRIO_DELTA_DSN", "host=127.0.0.1 user=postgres dbname=test")
SCHEMA = "dashboard_screenshots"
OUT = Path(__file__).resolve().parents[1] / "images"


@dataclass
class Payout:
    kind: ClassVar[str] = "payout"
    key: str
    amount_cents: int
    currency: str = "EUR"

    def id(self) -> str:
        return self.key


@dataclass
class Invoice:
    kind: ClassVar[str] = "invoice"
    number: str
    customer: str

    def id(self) -> str:
        return self.number


class Payouts(delta.Controller[Payout]):
    async def work(self, resource: delta.Resource[Payout]) -> None:
        await trio.sleep(0.01)
        if resource.object.amount_cents % 17 == 0:
            raise delta.TerminalError("bank API: account closed (IBAN DE89...3000)")


class Invoices(delta.Controller[Invoice]):
    async def work(self, resource: delta.Resource[Invoice]) -> None:
        await trio.sleep(0.005)


def browser() -> webdriver.Chrome:
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage"):
        options.add_argument(argument)
    options.add_argument("--window-size=1280,900")
    return webdriver.Chrome(options=options, service=Service("/usr/bin/chromedriver"))


async def main() -> None:
    with psycopg.connect(DSN, autocommit=True) as conn:
        conn.execute(f"drop schema if exists {SCHEMA} cascade")
    await delta.migrate(DSN, schema=SCHEMA)
    controllers = delta.Controllers()
    delta.add_controller(controllers, Payouts())
    delta.add_controller(controllers, Invoices())
    config = delta.Config(schema=SCHEMA, retry_policy=lambda attempt: 0.1)
    async with delta.open_delta_client(DSN, controllers, config=config) as client:
        await client.inform_many([Payout(f"po-{i:05}", 1000 + i * 7) for i in range(400)])
        await client.inform_many(
            [Invoice(f"INV-2026-{i:04}", f"customer {i % 9}") for i in range(250)]
        )
        await trio.sleep(4)
        await client.pause(kind="invoice")
        await client.inform_many([Invoice(f"INV-2026-{i:04}", "late") for i in range(250, 270)])
        async with trio.open_nursery() as nursery:
            (url,) = await nursery.start(
                partial(serve_dashboard, DSN, listen="127.0.0.1:0", schema=SCHEMA)
            )
            driver = await trio.to_thread.run_sync(browser)
            try:
                await trio.to_thread.run_sync(driver.get, url)
                await trio.to_thread.run_sync(
                    driver.save_screenshot, str(OUT / "dashboard-overview.png")
                )
                degraded = await client.list_resources(kind="payout", state="degraded")
                page = f"{url.rstrip('/')}/resource?kind=payout&id={degraded[0].object_id}"
                await trio.to_thread.run_sync(driver.get, page)
                await trio.to_thread.run_sync(
                    driver.save_screenshot, str(OUT / "dashboard-resource.png")
                )
            finally:
                await trio.to_thread.run_sync(driver.quit)
            nursery.cancel_scope.cancel()
        await client.resume(kind="invoice")
    with psycopg.connect(DSN, autocommit=True) as conn:
        conn.execute(f"drop schema {SCHEMA} cascade")
    print(
        f"saved {OUT / 'dashboard-overview.png'} and {OUT / 'dashboard-resource.png'}",
        file=sys.stderr,
    )


if __name__ == "__main__":
    trio.run(main)
