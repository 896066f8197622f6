"""A trio_delta client running in a thread of its own, callable from sync code.

Hypothesis runs each example synchronously; starting a client (and its
connections) per example would cost far more than the example. Instead one
client runs for the whole test in a background Trio thread and examples call
into it with :meth:`ClientThread.call`.
"""

from __future__ import annotations

import threading
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar

import trio

import trio_delta as delta

R = TypeVar("R")


class ClientThread:
    def __init__(
        self,
        dsn: str,
        controllers: delta.Controllers,
        config: delta.Config,
        namespaces: Mapping[str, delta.NamespaceConfig] | None = None,
    ) -> None:
        self._dsn = dsn
        self._controllers = controllers
        self._config = config
        self._namespaces = namespaces
        self._ready = threading.Event()
        self._token: trio.lowlevel.TrioToken | None = None
        self._stop: trio.Event | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="trio-delta-client", daemon=True)
        self.client: delta.Client | None = None

    def _run(self) -> None:
        try:
            trio.run(self._main)
        except BaseException as exc:
            self._error = exc
        finally:
            self._ready.set()

    async def _main(self) -> None:
        self._stop = trio.Event()
        async with delta.open_delta_client(
            self._dsn, self._controllers, namespaces=self._namespaces, config=self._config
        ) as client:
            self.client = client
            self._token = trio.lowlevel.current_trio_token()
            self._ready.set()
            await self._stop.wait()

    def __enter__(self) -> ClientThread:
        self._thread.start()
        self._ready.wait(60)
        if self._error is not None:
            raise self._error
        assert self._token is not None, "the client did not start within 60s"
        return self

    def call(self, fn: Callable[..., Awaitable[R]], *args: Any) -> R:
        """``await fn(*args)`` in the client's Trio thread; returns or raises as it did."""
        return trio.from_thread.run(fn, *args, trio_token=self._token)

    def __exit__(self, *exc_info: object) -> None:
        if self._token is not None and self._stop is not None:
            trio.from_thread.run_sync(self._stop.set, trio_token=self._token)
        self._thread.join(60)
        if self._error is not None and exc_info[0] is None:
            raise self._error
