"""``trio-delta run MODULE:ATTR``: a client for the user's controllers,
stopped by signals at every moment, even with work blocked in threads."""

from __future__ import annotations

import contextlib
import importlib
import logging
import os
import signal
import sys
from collections.abc import AsyncIterator, Mapping
from typing import TYPE_CHECKING, Any, NoReturn

import click
import trio

from .._config import DEFAULT_MAX_WORKERS, check_name
from .._errors import ConfigError, StoreError
from .._serving import parse_bind
from .._store.dsn import describe_dsn, normalize_dsn

if TYPE_CHECKING:
    from .._config import Config, NamespaceConfig
    from .._controllers import Controllers

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
    setup_logging,
)

# -- run -----------------------------------------------------------------------------


def load_controllers(target: str) -> Controllers:
    """The ``Controllers`` named by ``MODULE:ATTR`` (ATTR may be dotted, and
    may name a zero-argument callable returning one)."""
    from .._controllers import Controllers as ControllersType

    module_name, sep, attr = target.partition(":")
    if not sep or not module_name or not attr:
        raise click.BadParameter(
            f"{target!r}: expected MODULE:ATTR, for example myapp.sync:controllers",
            param_hint="MODULE:ATTR",
        )
    cwd = os.getcwd()
    if cwd not in sys.path and "" not in sys.path:
        sys.path.insert(0, cwd)
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name is not None and (
            module_name == exc.name or module_name.startswith(exc.name + ".")
        ):
            raise CliFailure(f"cannot import {module_name!r}: {exc}", EXIT_USAGE) from None
        raise CliFailure(f"importing {module_name!r} failed: {type(exc).__name__}: {exc}") from exc
    except Exception as exc:
        raise CliFailure(f"importing {module_name!r} failed: {type(exc).__name__}: {exc}") from exc
    obj: Any = module
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise CliFailure(f"{module_name!r} has no attribute {attr!r}", EXIT_USAGE) from None
    if not isinstance(obj, ControllersType) and callable(obj):
        try:
            obj = obj()
        except Exception as exc:
            raise CliFailure(f"calling {target} failed: {type(exc).__name__}: {exc}") from exc
    if not isinstance(obj, ControllersType):
        raise CliFailure(
            f"{target} is a {type(obj).__name__}, not a trio_delta.Controllers "
            "(or a function returning one)",
            EXIT_USAGE,
        )
    return obj


def _parse_namespace(
    ctx: click.Context, param: click.Parameter, value: tuple[str, ...]
) -> dict[str, int | None]:
    out: dict[str, int | None] = {}
    for item in value:
        name, sep, workers = item.partition("=")
        try:
            check_name("namespace", name)
        except ConfigError as exc:
            raise click.BadParameter(str(exc), ctx, param) from None
        if not sep:
            out[name] = None
            continue
        try:
            count = int(workers)
        except ValueError:
            count = 0
        if count < 1:
            raise click.BadParameter(f"{item!r}: WORKERS must be a positive integer", ctx, param)
        out[name] = count
    return out


#: After the second signal, how long the client may take to end once its
#: stop is over before the process exits without it (see ``_exit_now``).
EXIT_AFTER_STOP = 1.0


def _exit_now(signum: int) -> NoReturn:
    """End the process at once with the code of death by ``signum``.

    Only for a second signal while work blocks in a thread that ignores
    cancellation: Trio cannot end a task waiting for such a thread, so
    neither ``trio.run`` nor ``sys.exit`` returns before the thread does,
    maybe never. ``os._exit`` skips the interpreter's clean-up, which is
    safe once the stop has handed every claimed row back and written every
    outcome; the blocked threads' own work is lost, which is what a second
    signal asks for.
    """
    logging.shutdown()
    for stream in (sys.stderr, sys.stdout):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(128 + signum)


def _parse_bind(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """``HOST:PORT`` for ``--http`` (an IPv6 host in brackets)."""
    if value is None:
        return None
    try:
        _, port = parse_bind(value)
    except ConfigError as exc:
        raise click.BadParameter(str(exc)) from None
    if port == 0:  # the probes' port must be known to whoever probes them
        raise click.BadParameter(f"expected HOST:PORT, got {value!r}")
    return value


async def _run_client(
    dsn: str,
    controllers: Controllers,
    namespaces: Mapping[str, NamespaceConfig],
    config: Config,
    http: str | None = None,
) -> None:
    from .._client import Client
    from .._engine.runtime import FLUSH_TIMEOUT, name_resources
    from .._running import open_delta_client

    stop = trio.Event()
    running: list[Client] = []
    # Start-up may wait on the database (connecting, its first statements);
    # a signal then ends it at once: nothing is claimed yet to hand back.
    starting = trio.CancelScope()

    def stuck_work() -> str | None:
        """The work the stopped client still waits for, if any."""
        engine = running[0]._engine  # pyright: ignore[reportPrivateUsage]
        stuck = engine.running_work()
        if not engine.stopped.is_set() or not stuck:
            return None
        return f"{len(stuck)} work item(s) that ignore cancellation: {name_resources(stuck)}"

    async def tell_if_stuck() -> None:
        await running[0]._engine.stopped.wait()  # pyright: ignore[reportPrivateUsage]
        stuck = stuck_work()
        if stuck is not None:
            note(
                f"waiting for {stuck} (their rows are handed back); send the signal "
                "again to exit without waiting"
            )

    async def exit_if_stuck(signum: int) -> None:
        # Once the forced stop has handed the rows back (a stuck database
        # gets FLUSH_TIMEOUT), a client still running waits for threads.
        engine = running[0]._engine  # pyright: ignore[reportPrivateUsage]
        with trio.move_on_after(FLUSH_TIMEOUT + EXIT_AFTER_STOP):
            await engine.stopped.wait()
        stuck = stuck_work()
        if stuck is None:
            # Nothing known to block: the client normally ends within
            # moments; past that, something else (an informer) blocks.
            await trio.sleep(EXIT_AFTER_STOP)
        note(f"exiting without waiting for {stuck or 'the client to end'}")
        _exit_now(signum)

    async def watch(signals: AsyncIterator[int]) -> None:
        forced = False
        async for signum in signals:
            name = signal.Signals(signum).name
            if not stop.is_set() and not running:
                note(f"{name}: stopping before the client has started")
                stop.set()
                starting.cancel()
            elif not stop.is_set():
                note(
                    f"{name}: stopping gracefully (up to {config.shutdown_grace:g}s for "
                    "running work); send it again to force"
                )
                stop.set()
                if running:
                    nursery.start_soon(tell_if_stuck)
            elif not forced:
                note(f"{name}: forcing stop; unfinished work is handed back")
                forced = True
                for client in running:
                    client.force_stop()
                if running:
                    nursery.start_soon(exit_if_stuck, signum)
            else:
                note(f"{name}: exiting at once")
                _exit_now(signum)

    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(watch, signals)
            # Cancelled only while nothing runs yet (see watch).
            with starting:
                async with open_delta_client(
                    dsn, controllers, namespaces=namespaces, config=config
                ) as client:
                    running.append(client)
                    kinds = ", ".join(controllers.kinds()) or "(none)"
                    spaces = ", ".join(f"{n}={ns.max_workers}" for n, ns in namespaces.items())
                    note(
                        f"running {kinds} (namespaces {spaces}) on "
                        f"{describe_dsn(normalize_dsn(dsn))}, schema {config.schema!r}, "
                        f"as client {client.id}; Ctrl-C or SIGTERM stops"
                    )
                    async with trio.open_nursery() as served:
                        if http is not None:
                            from .._http import serve_http
                            from ..metrics import PrometheusMetrics

                            assert isinstance(config.observer, PrometheusMetrics)
                            bound = await served.start(
                                serve_http, client, config.observer.registry, http
                            )
                            note(f"serving /healthz, /readyz and /metrics on {', '.join(bound)}")
                        await stop.wait()
                        served.cancel_scope.cancel()
            nursery.cancel_scope.cancel()
    note("stopped")


@cli.command(epilog=EPILOG)
@click.argument("target", metavar="MODULE:ATTR")
@dsn_option
@schema_option
@click.option(
    "--max-workers",
    type=click.IntRange(min=1),
    default=DEFAULT_MAX_WORKERS,
    show_default=True,
    help="Concurrent work per namespace (unless NAME=WORKERS says otherwise).",
)
@click.option(
    "--namespace",
    "namespaces",
    multiple=True,
    metavar="NAME[=WORKERS]",
    callback=_parse_namespace,
    help="Work this namespace (repeat for several) [default: default].",
)
@click.option(
    "--shutdown-grace",
    type=click.FloatRange(min=0),
    default=None,
    help="Seconds running work may take to finish on stop [default: Config's].",
)
@click.option(
    "--http",
    metavar="HOST:PORT",
    default=None,
    callback=_parse_bind,
    help="Serve /healthz, /readyz and /metrics here (needs trio-delta[metrics]).",
)
def run(
    target: str,
    dsn: str | None,
    schema: str,
    max_workers: int,
    namespaces: dict[str, int | None],
    shutdown_grace: float | None,
    http: str | None,
) -> int:
    """Run a client for the controllers at MODULE:ATTR until stopped.

    ATTR is a trio_delta.Controllers object or a function returning one;
    MODULE is imported with the current directory on sys.path. SIGINT or
    SIGTERM stops gracefully (running work may finish within the shutdown
    grace); a second signal forces the stop. Exits 0 after a clean stop, or
    128+signal when a second signal ends it while work blocks in threads
    that ignore cancellation (their resources are handed back first).

    \b
    Example:
      trio-delta run myapp.sync:controllers --namespace default=20
    """
    from .._config import Config, NamespaceConfig

    conninfo = require_dsn(dsn)
    normalize_dsn(conninfo)  # a bad DSN fails before the import
    controllers = load_controllers(target)
    spaces = {
        name: NamespaceConfig(max_workers=workers or max_workers)
        for name, workers in (namespaces or {"default": None}).items()
    }
    extra: dict[str, Any] = {}
    if shutdown_grace is not None:
        extra["shutdown_grace"] = shutdown_grace
    if http is not None:
        try:
            from prometheus_client import CollectorRegistry

            from ..metrics import PrometheusMetrics
        except ImportError as exc:
            raise click.UsageError(
                f"--http needs the metrics extra: pip install 'trio-delta[metrics]' ({exc})"
            ) from None
        extra["observer"] = PrometheusMetrics(CollectorRegistry())
    config = Config(schema=schema, **extra)
    setup_logging(logging.INFO)
    try:
        trio.run(_run_client, conninfo, controllers, spaces, config, http)
    except BaseException as exc:
        leaf = innermost(exc)
        if isinstance(leaf, StoreError):  # say which database
            raise CliFailure(f"{describe_dsn(normalize_dsn(conninfo))}: {leaf}") from leaf
        raise
    return EXIT_OK
