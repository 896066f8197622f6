"""A web dashboard: resources by state, informers, the leader, recent
throughput; resource lists, details and repairs; pauses.

Needs the ``ui`` extra (``pip install 'trio-delta[ui]'``: Starlette,
Jinja2 and Hypercorn). Run it with ``trio-delta ui``, or open it in your own
Trio service and mount the ASGI application it yields::

    async with trio_delta.ui.open_dashboard(dsn) as dashboard:
        app.mount("/delta", dashboard)
        await hypercorn.trio.serve(app, config)

It runs on Trio (as the client does); under asyncio it raises
:class:`~trio_delta.TrioRequiredError`.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from contextlib import asynccontextmanager

import trio
from starlette.types import ASGIApp

from .._admin import Admin
from .._errors import ConfigError
from .._logs import get_logger
from .._serving import parse_bind, serve_asgi
from .._store.dsn import describe_dsn
from .._util import require_trio
from ._access import Access, Credentials, is_loopback, loopback_hosts
from ._app import Settings, build_app

__all__ = ["Credentials", "open_dashboard", "serve_dashboard"]

log = get_logger("trio_delta.ui")

#: The shortest access token accepted.
MIN_TOKEN_LENGTH = 16


@asynccontextmanager
async def open_dashboard(
    dsn: str,
    *,
    schema: str = "delta",
    read_only: bool = False,
    token: str | None = None,
    credentials: Credentials | None = None,
    allowed_hosts: frozenset[str] | None = None,
    refresh_seconds: float = 5.0,
    pool_size: int = 2,
) -> AsyncGenerator[ASGIApp, None]:
    """Connect to ``dsn`` and yield the dashboard as an ASGI application,
    usable until the block ends.

    ``token`` (at least 16 characters: a bearer token or the login form)
    or ``credentials`` (basic auth) protect it. ``allowed_hosts``: the
    ``Host`` names it answers (without port); None: any when it has a
    secret, else only loopback names (``localhost``, ``127.0.0.1``,
    ``[::1]``), so that a web page elsewhere cannot reach it through DNS
    rebinding. With no secret, anyone who reaches it may use it: serve it
    on a loopback address (:func:`serve_dashboard` insists).
    ``read_only`` hides and refuses every action. Raises
    :class:`~trio_delta.NotMigratedError` unless the schema is current.
    """
    require_trio("trio_delta.ui.open_dashboard")
    if token is not None and credentials is not None:
        raise ConfigError("give an access token or basic-auth credentials, not both")
    if token is not None and len(token) < MIN_TOKEN_LENGTH:
        raise ConfigError(f"the access token must be at least {MIN_TOKEN_LENGTH} characters")
    if allowed_hosts is None and token is None and credentials is None:
        allowed_hosts = loopback_hosts("127.0.0.1")
    if not refresh_seconds > 0:
        raise ConfigError(f"refresh_seconds must be positive, not {refresh_seconds!r}")
    access = Access(token=token, credentials=credentials, allowed_hosts=allowed_hosts)
    async with Admin.connect(dsn, schema, pool_size=pool_size) as admin:
        await admin.require_current()
        yield build_app(admin, access, Settings(read_only, refresh_seconds))


async def serve_dashboard(
    dsn: str,
    *,
    listen: str = "127.0.0.1:8080",
    schema: str = "delta",
    read_only: bool = False,
    token: str | None = None,
    credentials: Credentials | None = None,
    refresh_seconds: float = 5.0,
    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve the dashboard on ``listen`` until cancelled; started with the
    addresses it is bound to.

    On an address that is not loopback it requires ``token`` or
    ``credentials``; on a loopback one without them it answers only
    requests that name the loopback host (a guard against DNS rebinding).
    """
    host, _ = parse_bind(listen)
    secret = token is not None or credentials is not None
    if not secret and not is_loopback(host):
        raise ConfigError(
            f"the dashboard shows data and changes state: on {host}, which is not a "
            "loopback address, it needs an access token (TRIO_DELTA_UI_TOKEN) or "
            "basic-auth credentials (TRIO_DELTA_UI_USER and TRIO_DELTA_UI_PASSWORD)"
        )
    async with open_dashboard(
        dsn,
        schema=schema,
        read_only=read_only,
        token=token,
        credentials=credentials,
        allowed_hosts=None if secret else loopback_hosts(host),
        refresh_seconds=refresh_seconds,
    ) as app:
        log.info("dashboard for %s on %s", describe_dsn(dsn), listen)
        await serve_asgi(app, listen, logger=log, task_status=task_status)
