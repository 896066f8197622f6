"""Subscription fan-out: events reach subscribers without ever blocking workers.

Each subscription has its own bounded buffer. Publishing uses
``send_nowait``; when a subscriber's buffer is full the event is dropped and
counted on that subscription (a slow reader must not stall the control loop).
"""

from __future__ import annotations

from collections.abc import Generator
from contextlib import contextmanager

import trio

from .._errors import ConfigError
from .._logs import get_logger
from .._types import Event, EventCategory

log = get_logger("trio_delta.events")


class Subscription:
    """A receive channel of :class:`Event` plus its drop count.

    Iterate it with ``async for event in subscription``.
    """

    def __init__(self, categories: frozenset[EventCategory], buffer: int) -> None:
        self.categories = categories
        self._send, self._receive = trio.open_memory_channel[Event](buffer)
        self.dropped = 0
        """Events not delivered because the buffer was full."""

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> Event:
        try:
            return await self._receive.receive()
        except trio.EndOfChannel:
            raise StopAsyncIteration from None

    async def receive(self) -> Event:
        """The next event; raises ``trio.EndOfChannel`` once unsubscribed and empty."""
        return await self._receive.receive()

    def receive_nowait(self) -> Event:
        return self._receive.receive_nowait()

    def _offer(self, event: Event) -> None:
        try:
            self._send.send_nowait(event)
        except trio.WouldBlock:
            self.dropped += 1
        except (trio.ClosedResourceError, trio.BrokenResourceError):
            pass

    def _close(self) -> None:
        self._send.close()


class EventHub:
    def __init__(self, buffer: int) -> None:
        self._buffer = buffer
        self._subscriptions: set[Subscription] = set()

    def has_subscribers(self) -> bool:
        return bool(self._subscriptions)

    def publish(self, event: Event) -> None:
        for sub in self._subscriptions:
            if event.category in sub.categories:
                sub._offer(event)  # pyright: ignore[reportPrivateUsage]

    @contextmanager
    def subscribe(self, *categories: EventCategory) -> Generator[Subscription, None, None]:
        if not categories:
            wanted = frozenset(EventCategory)
        else:
            try:
                wanted = frozenset(EventCategory(c) for c in categories)
            except ValueError as exc:
                raise ConfigError(
                    f"unknown event category: {exc}; "
                    f"expected one of {[c.value for c in EventCategory]}"
                ) from None
        sub = Subscription(wanted, self._buffer)
        self._subscriptions.add(sub)
        try:
            yield sub
        finally:
            self._subscriptions.discard(sub)
            sub._close()  # pyright: ignore[reportPrivateUsage]
            if sub.dropped:
                log.warning("a subscriber dropped %d events (buffer %d)", sub.dropped, self._buffer)
