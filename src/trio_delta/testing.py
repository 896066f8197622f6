"""Test your controllers deterministically, without a database.

The client you get here is the real one (same engine, same controllers,
same configuration) running on an in-memory store whose time is Trio's.
Under ``trio.testing.MockClock(autojump_threshold=0)`` (pytest-trio's
``autojump_clock`` fixture) hours of retries, intervals and expiries pass in
milliseconds, at exact times, the same on every run::

    async def test_user_is_synced(autojump_clock):
        async with delta.testing.open_test_client(controllers) as t:
            await t.client.inform(User("bob@hello.com", "Bob", 1))
            await t.run_until_idle()
            row = await t.client.get_resource("user", "bob@hello.com")
            assert row.state is delta.ResourceState.SYNCED

What the memory store cannot do: run SQL (``tx.execute`` raises
:class:`ConfigError`). Test SQL, and anything about Postgres itself, against
a real database.
"""

from __future__ import annotations

import inspect
import random
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any, cast

import trio
import trio.testing

from ._client import Client
from ._config import Config, NamespaceConfig, check_namespaces
from ._controllers import Controllers
from ._running import check_controllers, run_client
from ._store.memory import DEFAULT_ANCHOR, MemoryStore
from ._store.params import ResourceFilter
from ._store.port import Store
from ._types import CLAIMABLE_STATES, Event, ResourceRow, ResourceState
from ._util import NoPublicConstructor, construct, fixup_module_metadata, require_trio

__all__ = [
    "DEFAULT_ANCHOR",
    "MemoryStore",
    "TestClient",
    "open_test_client",
    "seed_trio_scheduler",
]


def seed_trio_scheduler(seed: int) -> None:
    """Make Trio's choice among tasks that are ready at the same instant
    repeat from run to run.

    Trio deliberately runs simultaneously-ready tasks in a random order. When
    two clients race for the same thing at the same instant (an informer
    lease, say), which one wins is decided there. Call this before
    ``trio.run`` to replay such races exactly. It seeds the random source
    Trio's scheduler draws from (the one Trio exposes to Hypothesis for the
    same purpose), a private detail of Trio.
    """
    from trio._core import _run  # pyright: ignore[reportPrivateUsage]

    _run._r.seed(seed)  # pyright: ignore[reportPrivateUsage]


class _Changes:
    """Signalled after every store call, so waiting helpers re-check state
    exactly when something may have changed."""

    def __init__(self) -> None:
        self._event: trio.Event | None = None  # made when someone waits

    async def wait(self) -> None:
        """Return when the next store call has ended."""
        if self._event is None:
            self._event = trio.Event()
        await self._event.wait()

    def signal(self) -> None:
        if self._event is not None:
            self._event.set()
            self._event = None


class _ObservedPart:
    """Forwards to one part of the memory store, signalling after each call."""

    def __init__(self, part: object, changes: _Changes) -> None:
        self._part = part
        self._changes = changes

    def __getattr__(self, name: str) -> Any:
        attr: Any = getattr(self._part, name)
        if not inspect.iscoroutinefunction(attr):
            return attr  # transaction() and listen() are context managers
        part, changes = self._part, self._changes

        async def observed(*args: Any, **kwargs: Any) -> Any:
            try:
                # Looked up per call, so a method patched on the part counts.
                fn = cast(Callable[..., Awaitable[Any]], getattr(part, name))
                return await fn(*args, **kwargs)
            finally:
                changes.signal()

        # Kept, so that later calls skip this lookup: an engine calls its
        # store tens of thousands of times in a simulated day.
        self.__dict__[name] = observed
        return observed


class _ObservedStore:
    """The memory store as the engine sees it, each part observed."""

    def __init__(self, store: MemoryStore) -> None:
        self._store = store
        self.changes = _Changes()
        self.schema = store.schema
        self.notifications_reliable = store.notifications_reliable
        self.queue = _ObservedPart(store.queue, self.changes)
        self.control = _ObservedPart(store.control, self.changes)
        self.insights = _ObservedPart(store.insights, self.changes)

    async def database_now(self) -> datetime:
        return await self._store.database_now()

    async def schema_version(self) -> int | None:
        return await self._store.schema_version()

    async def aclose(self) -> None:
        await self._store.aclose()


class TestClient(metaclass=NoPublicConstructor):
    """A running client on a memory store, with helpers for tests; get one
    from :func:`open_test_client`."""

    __test__ = False  # not a pytest test class

    def __init__(
        self,
        client: Client,
        store: MemoryStore,
        observed: _ObservedStore,
        controllers: Controllers,
        namespaces: Mapping[str, NamespaceConfig],
    ) -> None:
        self.client = client
        self.store = store
        self._observed = observed
        self._kinds = set(controllers.kinds())
        self._namespaces = set(namespaces)
        self.events: list[Event] = []
        """Every event the client published, in order."""

    def now(self) -> datetime:
        """The engine's current time."""
        return self.client._clock.now()  # pyright: ignore[reportPrivateUsage]

    async def idle(self) -> bool:
        """Nothing is being worked, due now, or due to be informed now."""
        now = self.now()
        for row in await self.store.insights.list_resources(ResourceFilter()):
            if row.state is ResourceState.PENDING:
                return False
            if (
                row.state in CLAIMABLE_STATES
                and row.scheduled_at <= now
                and row.kind in self._kinds
                and row.namespace in self._namespaces
            ):
                return False
        for state in await self.store.control.list_controllers():
            if state.kind not in self._kinds:
                continue
            if state.lease_owner is not None or state.requested_at is not None:
                return False
            if state.next_inform_at is not None and state.next_inform_at <= now:
                return False
        return True

    async def run_until_idle(self) -> None:
        """Let the engine run until nothing is in flight or due now.

        Resources scheduled in the future (retries with backoff) do not count:
        use :meth:`advance` to move time on to them.
        """
        while True:
            await trio.testing.wait_all_tasks_blocked()
            if await self.idle():
                return
            # Work is due or running but every task waits on time: let the
            # (autojump) clock move on, and look again after the next change.
            await self._observed.changes.wait()

    async def advance(self, seconds: float) -> None:
        """Let ``seconds`` of engine time pass, then run until idle."""
        await trio.sleep(seconds)
        await self.run_until_idle()

    async def run_until(self, predicate: Callable[[], Awaitable[bool] | bool]) -> None:
        """Run until ``predicate()`` (sync or async) is true. Bound it with
        ``trio.fail_after`` if it might never be."""
        while True:
            result = predicate()
            if not isinstance(result, bool):
                result = await result
            if result:
                return
            await self._observed.changes.wait()

    async def state_of(self, kind: str, object_id: str) -> ResourceState | None:
        row = await self.client.get_resource(kind, object_id)
        return None if row is None else row.state

    async def resources(
        self, *, kind: str | None = None, state: ResourceState | None = None
    ) -> list[ResourceRow[Any]]:
        return await self.client.list_resources(kind=kind, state=state)


@asynccontextmanager
async def open_test_client(
    controllers: Controllers,
    *,
    namespaces: Mapping[str, NamespaceConfig] | None = None,
    config: Config | None = None,
    store: MemoryStore | None = None,
    seed: int = 0,
) -> AsyncGenerator[TestClient, None]:
    """Run a client for ``controllers`` on a memory store.

    ``config`` defaults to :class:`Config` with ``random`` seeded from
    ``seed`` and ``client_id="test-client"``, so jitter and ids repeat run to
    run. Pass ``store`` to share one memory store between several clients
    (a multi-client test) or to keep it after the client stops.
    """
    require_trio("trio_delta.testing.open_test_client()")
    check_controllers(controllers)
    checked = check_namespaces(namespaces)
    if config is None:
        config = Config(random=random.Random(seed), client_id="test-client")
    if store is None:
        store = MemoryStore(anchor=DEFAULT_ANCHOR, lock_timeout=config.lock_timeout)
    observed = _ObservedStore(store)
    async with (
        run_client(cast(Store, observed), controllers, checked, config) as client,
        trio.open_nursery() as nursery,
    ):
        tc = construct(TestClient, client, store, observed, controllers, checked)
        with client.subscribe() as subscription:

            async def record() -> None:
                async for event in subscription:
                    tc.events.append(event)

            nursery.start_soon(record)
            yield tc
            nursery.cancel_scope.cancel()


fixup_module_metadata(__name__, globals())
