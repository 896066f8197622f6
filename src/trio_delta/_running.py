"""Opening a client and running it: ``open_delta_client`` on Postgres,
``run_client`` on any open store (the memory store's test client too), and
how a failure inside becomes the one exception the caller sees."""

from __future__ import annotations

import os
import socket
from collections.abc import AsyncGenerator, Mapping
from contextlib import asynccontextmanager

import trio

from ._client import Client
from ._config import Config, NamespaceConfig, check_namespaces
from ._controllers import Controllers
from ._engine.clock import Clock
from ._engine.context import EngineContext
from ._errors import ClientFailedError, ConfigError
from ._logs import current_client_id, get_logger
from ._store.port import Store
from ._util import construct, leaf_exceptions, require_trio

log = get_logger("trio_delta.client")


def _make_client_id(config: Config) -> str:
    if config.client_id is not None:
        return config.client_id
    suffix = f"{config.random.getrandbits(32):08x}"
    return f"{socket.gethostname()[:48]}-{os.getpid()}-{suffix}"


def _default_pool_size(namespaces: Mapping[str, NamespaceConfig]) -> int:
    workers = sum(ns.max_workers for ns in namespaces.values())
    return max(4, min(20, 2 + workers // 10))


def _failure_from_group(
    group: BaseExceptionGroup[BaseException], body_error: BaseException | None
) -> BaseException:
    """The one exception ``open_delta_client`` raises for a nursery's group."""
    _, rest = group.split(lambda e: e is body_error)
    if rest is None:
        assert body_error is not None
        return body_error
    failures = [e for e in leaf_exceptions(rest) if not isinstance(e, trio.Cancelled)]
    if not failures:
        return body_error if body_error is not None else rest
    first = failures[0]
    if isinstance(first, KeyboardInterrupt | SystemExit):
        return first
    err = ClientFailedError(
        f"trio_delta client failed: {type(first).__name__}: {first}"
        + (f" (and {len(failures) - 1} more)" if len(failures) > 1 else "")
    )
    err.__cause__ = first
    return err


@asynccontextmanager
async def run_client(
    store: Store,
    controllers: Controllers,
    namespaces: Mapping[str, NamespaceConfig],
    config: Config,
) -> AsyncGenerator[Client, None]:
    """Run a client on an open store (Postgres or memory); inside a
    trio-asyncio loop with ``config.asyncio``."""
    if not config.asyncio:
        async with _run_client(store, controllers, namespaces, config) as client:
            yield client
        return
    from ._store._bridge import open_asyncio_loop

    async with (
        open_asyncio_loop(),
        _run_client(store, controllers, namespaces, config) as client,
    ):
        yield client


@asynccontextmanager
async def _run_client(
    store: Store,
    controllers: Controllers,
    namespaces: Mapping[str, NamespaceConfig],
    config: Config,
) -> AsyncGenerator[Client, None]:
    clock = Clock(await store.database_now())
    ctx = EngineContext(store, clock, _make_client_id(config), config, controllers)
    client = construct(Client, ctx, namespaces)
    engine = client._engine  # pyright: ignore[reportPrivateUsage]
    body_error: BaseException | None = None
    failure: BaseException | None = None
    try:
        async with trio.open_nursery() as nursery:
            # Every record the engine's tasks log carries this client's id:
            # they copy the context they are started in.
            client_token = current_client_id.set(client.id)
            try:
                await engine.start(nursery)
            finally:
                current_client_id.reset(client_token)
            if engine.observer is not None:
                engine.observer.client_started(client)
            log.info(
                "client %s started: kinds %s, namespaces %s",
                client.id,
                list(controllers.kinds()),
                dict(namespaces),
            )
            try:
                with engine.body_scope:  # cancelled when a work raised a BaseException
                    yield client
            except BaseException as exc:
                body_error = exc
                raise
            finally:
                client._closed = True  # pyright: ignore[reportPrivateUsage]
                stop_token = current_client_id.set(client.id)
                try:
                    with trio.CancelScope(shield=True):
                        await engine.stop()
                finally:
                    current_client_id.reset(stop_token)
                nursery.cancel_scope.cancel()
    except BaseExceptionGroup as group:
        failure = _failure_from_group(group, body_error)
    log.info("client %s stopped", client.id)
    if engine.fatal is not None:
        # Raised by a work: a KeyboardInterrupt or SystemExit leaves as
        # itself, as Trio raises them, and so does any other BaseException
        # (wrapping it in ClientFailedError, an Exception, would let
        # ``except Exception`` catch what was meant to end the program).
        raise engine.fatal
    if failure is not None:
        raise failure from None


def check_controllers(controllers: object) -> Controllers:
    if not isinstance(controllers, Controllers):
        raise ConfigError(f"controllers must be a trio_delta.Controllers, got {controllers!r}")
    return controllers


@asynccontextmanager
async def open_delta_client(
    dsn: str,
    controllers: Controllers,
    *,
    namespaces: Mapping[str, NamespaceConfig] | None = None,
    config: Config | None = None,
) -> AsyncGenerator[Client, None]:
    """Start a client on the database at ``dsn`` and stop it when the block exits.

    Raises :class:`ConfigError` for bad arguments and :class:`NotMigratedError`
    when the schema is missing or old, before anything runs. Leaving the block
    stops the client gracefully, then forcibly (see :attr:`Config.shutdown_grace`).
    Runs on Trio: called from asyncio it raises :class:`TrioRequiredError`.
    """
    require_trio("trio_delta.open_delta_client()")
    from ._store.dsn import normalize_dsn, with_connect_timeout
    from ._store.postgres import open_postgres_store

    config = config if config is not None else Config()
    if not isinstance(config, Config):
        raise ConfigError(f"config must be a trio_delta.Config, got {config!r}")
    checked = check_namespaces(namespaces)
    check_controllers(controllers)
    conninfo = with_connect_timeout(normalize_dsn(dsn))
    if not config.prepared_statements and config.listen and config.listen_dsn is None:
        log.warning(
            "prepared_statements=False, as for a transaction-mode pooler, but LISTEN goes "
            "through the same DSN: such a pooler delivers no notifications, so work "
            "informed elsewhere waits for the next poll (every %gs). Set listen_dsn to "
            "the server itself, or listen=False",
            config.poll_interval,
        )
    pool_size = config.pool_size or _default_pool_size(checked)
    driver = "native" if config.driver == "native" else "trio-asyncio"
    # The leader's statements give up well before its lease would run out,
    # rather than be cancelled mid-wait and leave their backend waiting.
    leader_lock_timeout = min(config.lock_timeout, config.leader_ttl / 3)
    async with (
        open_postgres_store(
            conninfo,
            schema=config.schema,
            pool_size=pool_size,
            driver=driver,
            lock_timeout=config.lock_timeout,
            leader_lock_timeout=leader_lock_timeout,
            async_commit=config.async_commit,
            session_state=config.prepared_statements,
            dedicated=config.dedicated_connections,
            listen_dsn=None
            if config.listen_dsn is None
            else with_connect_timeout(normalize_dsn(config.listen_dsn)),
        ) as store,
        run_client(store, controllers, checked, config) as client,
    ):
        yield client
