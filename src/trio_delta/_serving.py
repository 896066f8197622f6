"""Serving an ASGI application over HTTP on Trio, with Hypercorn's Trio
worker: the probes and metrics of ``trio-delta run --http`` and the
dashboard. Hypercorn comes with the extras that need it and is imported
only when something is served."""

from __future__ import annotations

import logging
from typing import Any

import trio

from ._errors import ConfigError


def parse_bind(bind: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:8080`` for IPv6) as host and port; port 0
    asks for any free port."""
    host, sep, port = bind.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ConfigError(f"expected HOST:PORT, got {bind!r}")
    return host.strip("[]"), int(port)


async def serve_asgi(
    app: Any,
    bind: str,
    *,
    logger: logging.Logger,
    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``app`` on ``bind`` (``HOST:PORT``) until cancelled; started
    with the addresses bound. Errors go to ``logger``; no access log."""
    from hypercorn.config import Config as HypercornConfig
    from hypercorn.trio import serve  # pyright: ignore[reportUnknownVariableType]

    host, port = parse_bind(bind)
    config = HypercornConfig()
    config.bind = [f"[{host}]:{port}" if ":" in host else f"{host}:{port}"]
    config.accesslog = None
    config.errorlog = logger
    await serve(app, config, task_status=task_status, mode="asgi")
