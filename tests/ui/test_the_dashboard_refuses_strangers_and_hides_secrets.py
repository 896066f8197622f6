"""Off loopback the dashboard needs a token or credentials; a form from
anywhere else is refused; the DSN's password reaches neither page nor log;
on loopback without a secret only the loopback host name is answered."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import httpx
import pytest
import trio
from psycopg.conninfo import make_conninfo

import trio_delta as delta
from trio_delta.ui import Credentials, open_dashboard

from .browser import Browser
from .dashboards import http, served

TOKEN = "s3cret-token-for-tests"
PASSWORD = "pg-password-never-shown"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def with_password(dsn: str) -> str:
    """``dsn`` carrying a password (trust auth ignores it; it must not leak)."""
    return make_conninfo(dsn, password=PASSWORD)


@pytest.fixture
def ui_on_every_address(pg_dsn: str, schema: str) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    """``trio-delta ui --listen 0.0.0.0:PORT`` with a token from the environment."""
    port = free_port()
    env = {**os.environ, "TRIO_DELTA_UI_TOKEN": TOKEN}
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "trio_delta",
            "ui",
            "--dsn",
            with_password(pg_dsn),
            "--schema",
            schema,
            "--listen",
            f"0.0.0.0:{port}",
        ],
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(200):
            try:
                httpx.get(url + "/login", timeout=1)
                break
            except httpx.TransportError:
                if process.poll() is not None:
                    raise AssertionError(process.stderr.read() if process.stderr else "") from None
                time.sleep(0.05)
        yield url, process
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=10)


async def test_off_loopback_a_token_is_required(
    ui_on_every_address: tuple[str, subprocess.Popen[str]], browser: Browser
) -> None:
    url, process = ui_on_every_address
    for path in ("/", "/resources", "/resource?kind=x&id=y", "/fragments/overview"):
        refused = await http("GET", url + path)
        assert refused.status_code == 401, path
        assert "order" not in refused.text
    wrong = await http("GET", url + "/", headers={"authorization": "Bearer wrong"})
    assert wrong.status_code == 401
    allowed = await http("GET", url + "/", headers={"authorization": f"Bearer {TOKEN}"})
    assert allowed.status_code == 200
    assert PASSWORD not in allowed.text
    assert allowed.headers["content-security-policy"].startswith("default-src 'none'")

    # In the browser: the sign-in form, a wrong token, then the right one.
    await browser.get(url + "/")
    assert "sign in" in await browser.text("body")
    await browser.get(url + "/login")
    await browser.type('input[name="token"]', "wrong")
    await browser.click("#login button")
    assert await browser.text("#login-failed") == "That token is not right."
    await browser.type('input[name="token"]', TOKEN)
    await browser.click("#login button")
    assert await browser.text("h2") == "Resources"
    (cookie,) = await browser.run(browser.driver.get_cookies)
    assert (cookie["httpOnly"], cookie["sameSite"]) == (True, "Strict")
    assert TOKEN not in cookie["value"]
    assert PASSWORD not in await browser.page_source()

    # A form posted without the dashboard's CSRF token is refused.
    forged = await http(
        "POST",
        url + "/actions",
        headers={"authorization": f"Bearer {TOKEN}"},
        data={"action": "delete", "kind": "order", "confirmed": "yes"},
    )
    assert forged.status_code == 403
    process.send_signal(signal.SIGTERM)
    process.wait(timeout=10)
    assert process.stderr is not None
    log = process.stderr.read()
    assert "dashboard for" in log
    assert PASSWORD not in log


async def test_off_loopback_without_a_secret_it_will_not_start(pg_dsn: str, schema: str) -> None:
    done = await trio.run_process(
        [
            sys.executable,
            "-m",
            "trio_delta",
            "ui",
            "--dsn",
            pg_dsn,
            "--schema",
            schema,
            "--listen",
            f"0.0.0.0:{free_port()}",
        ],
        capture_stdout=True,
        capture_stderr=True,
        check=False,
        env={k: v for k, v in os.environ.items() if not k.startswith("TRIO_DELTA_UI_")},
    )
    assert done.returncode == 2, done.stderr
    assert b"needs an access token (TRIO_DELTA_UI_TOKEN)" in done.stderr


async def test_basic_auth_credentials_are_asked_for_and_checked(pg_dsn: str, schema: str) -> None:
    async with served(pg_dsn, schema, credentials=Credentials("ops", "pw")) as url:
        asked = await http("GET", url + "/")
        assert asked.status_code == 401
        assert asked.headers["www-authenticate"].startswith("Basic ")
        assert (await http("GET", url + "/", auth=("ops", "wrong"))).status_code == 401
        assert (await http("GET", url + "/", auth=("other", "pw"))).status_code == 401
        assert (await http("GET", url + "/", auth=("ops", "pw"))).status_code == 200
        garbled = await http("GET", url + "/", headers={"authorization": "Basic %%%"})
        assert garbled.status_code == 401


async def test_on_loopback_only_the_loopback_host_is_answered(pg_dsn: str, schema: str) -> None:
    async with served(pg_dsn, schema) as url:
        port = int(url.rsplit(":", 1)[1])

        for host, status in (
            (f"127.0.0.1:{port}", 200),
            (f"localhost:{port}", 200),
            (f"attacker.example:{port}", 421),  # DNS rebinding
        ):
            assert (await http("GET", url + "/", headers={"host": host})).status_code == status

        # A cross-site form post is refused even with a valid CSRF token.
        page = await http("GET", url + "/resources")
        match = re.search(r'name="csrf" value="([0-9a-f]+)"', page.text)
        assert match is not None
        form = {"csrf": match.group(1), "action": "pause", "kind": "order", "confirmed": "yes"}
        cross = await trio.to_thread.run_sync(
            lambda: httpx.post(
                url + "/actions", data=form, headers={"sec-fetch-site": "cross-site"}
            )
        )
        assert cross.status_code == 403
        same = await http("POST", url + "/actions", data=form)
        assert same.status_code == 200
        assert "Paused: kind order." in same.text


async def test_open_dashboard_needs_a_migrated_schema(pg_dsn: str, schema_name: str) -> None:
    with pytest.raises(delta.NotMigratedError):
        async with open_dashboard(pg_dsn, schema=schema_name):
            pass


def test_open_dashboard_refuses_asyncio(pg_dsn: str) -> None:
    async def under_asyncio() -> None:
        async with open_dashboard(pg_dsn):
            pass

    with pytest.raises(delta.TrioRequiredError):
        asyncio.run(under_asyncio())
