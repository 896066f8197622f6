"""``trio-delta run --http``: health probes and metrics over HTTP, on Trio.

A small ASGI application served by Hypercorn's Trio worker (the
``metrics`` extra): ``/healthz`` (alive: every service of the client
runs), ``/readyz`` (alive and the database answers) and ``/metrics``
(Prometheus' text format). Imported only when ``--http`` is given.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import asdict
from typing import Any

import trio
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from ._client import Client
from ._logs import get_logger
from ._serving import serve_asgi

log = get_logger("trio_delta.http")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]

#: A liveness probe must answer fast: the database is not asked long.
LIVENESS_WITHIN = 0.5


def make_app(client: Client, registry: CollectorRegistry) -> App:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            return
        path = scope["path"]
        content_type = "application/json"
        if path in ("/healthz", "/readyz"):
            live = path == "/healthz"
            health = await client.health(within=LIVENESS_WITHIN if live else 2.0)
            ok = health.running if live else health.ready
            status = 200 if ok else 503
            body = json.dumps({"ok": ok, **asdict(health), "ready": health.ready}).encode()
        elif path == "/metrics":
            status, body, content_type = 200, generate_latest(registry), CONTENT_TYPE_LATEST
        else:
            status, body = 404, b'{"error": "not found: try /healthz, /readyz or /metrics"}'
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(b"content-type", content_type.encode())],
            }
        )
        await send({"type": "http.response.body", "body": body})

    return app


async def serve_http(
    client: Client,
    registry: CollectorRegistry,
    bind: str,
    *,
    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve the probes and metrics on ``bind`` (``HOST:PORT``) until
    cancelled; started with the addresses bound."""
    await serve_asgi(make_app(client, registry), bind, logger=log, task_status=task_status)
