"""``trio-delta ui``: the web dashboard (the ``ui`` extra)."""

from __future__ import annotations

import functools
import os
import signal

import click
import trio

from .._errors import ConfigError, NotMigratedError, StoreError
from .._serving import parse_bind
from .._store.dsn import describe_dsn, normalize_dsn
from ._common import (
    EPILOG,
    EXIT_OK,
    EXIT_USAGE,
    CliFailure,
    cli,
    dsn_option,
    innermost,
    note,
    require_dsn,
    schema_option,
)

TOKEN_VARIABLE = "TRIO_DELTA_UI_TOKEN"
USER_VARIABLE = "TRIO_DELTA_UI_USER"
PASSWORD_VARIABLE = "TRIO_DELTA_UI_PASSWORD"


@cli.command(epilog=EPILOG)
@dsn_option
@schema_option
@click.option(
    "--listen",
    default="127.0.0.1:8080",
    show_default=True,
    metavar="HOST:PORT",
    help="Where to serve it; any address but loopback needs a token or credentials.",
)
@click.option("--read-only", is_flag=True, help="Show everything, change nothing.")
@click.option(
    "--refresh",
    type=click.FloatRange(min=0.25),
    default=5.0,
    show_default=True,
    help="Seconds between the overview's own refreshes.",
)
def ui(dsn: str | None, schema: str, listen: str, read_only: bool, refresh: float) -> int:
    """Serve the web dashboard: resources by state, informers, the leader,
    throughput; resource lists and details; retry, invalidate, delete,
    cancel, pause and resume, each confirmed first.

    Secrets come from the environment, never the command line:
    TRIO_DELTA_UI_TOKEN (an access token: the login form or an
    `Authorization: Bearer` header), or TRIO_DELTA_UI_USER and
    TRIO_DELTA_UI_PASSWORD (basic auth). On a loopback address neither is
    needed. Needs trio-delta[ui]. SIGINT or SIGTERM stops it.
    """
    try:
        from ..ui import Credentials, serve_dashboard
    except ImportError as exc:
        raise click.UsageError(
            f"the dashboard needs the ui extra: pip install 'trio-delta[ui]' ({exc})"
        ) from None
    try:
        parse_bind(listen)
    except ConfigError as exc:
        raise click.BadParameter(str(exc), param_hint="--listen") from None
    conninfo = require_dsn(dsn)
    token = os.environ.get(TOKEN_VARIABLE)
    if token == "":
        raise click.UsageError(f"{TOKEN_VARIABLE} is set but empty")
    user, password = os.environ.get(USER_VARIABLE), os.environ.get(PASSWORD_VARIABLE)
    if (user is None) != (password is None) or user == "" or password == "":
        raise click.UsageError(f"set both {USER_VARIABLE} and {PASSWORD_VARIABLE}, not empty")
    credentials = Credentials(user, password) if user and password else None

    async def serve() -> None:
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async with trio.open_nursery() as nursery:
                bound = await nursery.start(
                    functools.partial(
                        serve_dashboard,
                        conninfo,
                        listen=listen,
                        schema=schema,
                        read_only=read_only,
                        token=token,
                        credentials=credentials,
                        refresh_seconds=refresh,
                    )
                )
                note(
                    f"dashboard for {describe_dsn(normalize_dsn(conninfo))}, schema {schema!r}, "
                    f"on {', '.join(bound)}{' (read-only)' if read_only else ''}; Ctrl-C stops"
                )
                async for _ in signals:
                    nursery.cancel_scope.cancel()
                    break

    try:
        trio.run(serve)
    except BaseException as exc:
        leaf = innermost(exc)
        if isinstance(leaf, (StoreError, NotMigratedError)):  # say which database
            raise CliFailure(f"{describe_dsn(normalize_dsn(conninfo))}: {leaf}") from None
        if isinstance(leaf, ConfigError):
            raise CliFailure(str(leaf), EXIT_USAGE) from None
        raise
    note("stopped")
    return EXIT_OK
