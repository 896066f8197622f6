"""``open_dashboard`` yields an ASGI app that works mounted under a path of
the user's own Starlette app: its links, style sheet, forms and sign-in
cookie all carry the mount's prefix."""

from __future__ import annotations

import re
from functools import partial

import httpx
import trio
from hypercorn.config import Config
from hypercorn.trio import serve
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Mount, Route

from trio_delta.ui import open_dashboard

TOKEN = "t0ken-for-a-mounted-test"


async def test_mounted_under_a_prefix(pg_dsn: str, schema: str) -> None:
    async with open_dashboard(pg_dsn, schema=schema, token=TOKEN) as dashboard:
        app = Starlette(
            routes=[
                Route("/", lambda request: PlainTextResponse("the user's own app")),
                Mount("/ops/delta", app=dashboard),
            ]
        )
        config = Config()
        config.bind = ["127.0.0.1:0"]
        async with trio.open_nursery() as nursery:
            (url,) = await nursery.start(partial(serve, app, config, mode="asgi"))  # pyright: ignore[reportArgumentType]
            url = url.rstrip("/")

            def session() -> list[httpx.Response]:
                with httpx.Client(base_url=url) as http:
                    own = http.get("/")
                    refused = http.get("/ops/delta/")
                    login = http.post("/ops/delta/login", data={"token": TOKEN})
                    overview = http.get("/ops/delta/")
                    style = http.get("/ops/delta/static/dashboard.css")
                    listing = http.get("/ops/delta/resources")
                    return [own, refused, login, overview, style, listing]

            own, refused, login, overview, style, listing = await trio.to_thread.run_sync(session)
            nursery.cancel_scope.cancel()
    assert own.text == "the user's own app"
    assert refused.status_code == 401
    assert 'href="/ops/delta/login"' in refused.text
    assert login.status_code == 303
    assert login.headers["location"] == "/ops/delta/"
    assert "Path=/ops/delta/" in login.headers["set-cookie"]
    assert overview.status_code == 200
    assert 'href="/ops/delta/static/dashboard.css"' in overview.text
    assert 'data-source="/ops/delta/fragments/overview"' in overview.text
    assert style.status_code == 200
    assert style.headers["content-type"].startswith("text/css")
    assert re.search(r'<form method="post" action="/ops/delta/actions"', listing.text)
