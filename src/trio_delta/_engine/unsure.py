"""Rows an inform may have claimed, without the client knowing.

An idle client's single inform claims its row in the upsert (see the
fetcher's ``reserve_write_claim``). If that statement fails in a way that
may have committed it (the connection broke as the reply was due), the
row may be ``pending`` under this client with no worker on it. Rather
than leave it to the rescuer (``work_timeout + rescue_after`` later), the
fetcher keeps its slot and has the row read back here: ours (pending,
attempt 1, attempted by us at the write's time) goes to a worker, anything
else frees the slot.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import trio

from .._errors import StoreError
from .._logs import Throttled, get_logger
from .._store.port import InsightStore
from .._types import Resource
from .clock import Clock

log = get_logger("trio_delta.fetcher")

#: After a failed read, how soon to read again (seconds; doubled after
#: each failure, up to :data:`LONGEST_RETRY`).
FIRST_RETRY = 0.05
LONGEST_RETRY = 5.0


@dataclass(frozen=True, slots=True)
class UnsureClaim:
    """A single inform whose write failed after it may have committed."""

    kind: str
    namespace: str
    object_id: str
    claimed_at: datetime


class UnsureClaims:
    """The unsure claims of one fetcher, each holding its slot until read.

    ``take(kind, namespace, row, claimed_at)``: the fetcher's hand-over of
    a row its write claimed (it frees the slot when the row is not ours);
    ``release(namespace, kind)``: a slot given up. Reads go on for at most
    ``give_up_after`` from the write: a row handed to a worker later than
    that could still be running when the rescuer takes it.
    """

    def __init__(
        self,
        insights: InsightStore,
        clock: Clock,
        *,
        give_up_after: timedelta,
        take: Callable[[str, str, Resource[Any] | None, datetime], None],
        release: Callable[[str, str], None],
    ) -> None:
        self._insights = insights
        self._clock = clock
        self._give_up_after = give_up_after
        self._take = take
        self._release = release
        self._storm = Throttled(log)
        self._claims: list[UnsureClaim] = []
        self.reading = False
        self.retry_at = -math.inf
        """Trio time of the next read."""
        self._delay = FIRST_RETRY

    def __bool__(self) -> bool:
        return bool(self._claims)

    def add(self, claim: UnsureClaim) -> None:
        self._claims.append(claim)
        self.retry_at = -math.inf
        self._delay = FIRST_RETRY

    async def read(self) -> None:
        """Read each row back and hand it over; raises :class:`StoreError`
        with the rest still unsure. A read still unanswered at its claim's
        ``give_up_after`` gives that claim up."""
        self.reading = True
        try:
            while self._claims:
                claim = self._claims[0]
                too_late = self._too_late(claim)
                row: Resource[Any] | None = None
                with trio.move_on_at(self._clock.trio_time(too_late)) as scope:
                    row = await self._insights.get_resource(claim.kind, claim.object_id)
                self._claims.pop(0)
                if scope.cancelled_caught or self._clock.now() >= too_late:
                    self._give_up_one(claim)
                else:
                    self._take(claim.kind, claim.namespace, row, claim.claimed_at)
        finally:
            self.reading = False

    async def read_when_due(self) -> None:
        """:meth:`read` if its retry is due; a failure is logged and tried
        again later, after a growing delay, until ``give_up_after``."""
        if self.reading or trio.current_time() < self.retry_at:
            return
        try:
            await self.read()
        except StoreError as exc:
            self._storm.warning(
                "reading back a row an inform may have claimed failed, retrying in %.2fs: %s",
                self._delay,
                exc,
            )
            self.retry_at = trio.current_time() + self._delay
            self._delay = min(self._delay * 2, LONGEST_RETRY)
            if self._clock.now() >= self._too_late(self._claims[0]):
                self.give_up()
            return
        self._delay = FIRST_RETRY

    def _too_late(self, claim: UnsureClaim) -> datetime:
        """When reading ``claim``'s row back comes too late to hand it over."""
        return claim.claimed_at + self._give_up_after

    def hold_claims(self) -> bool:
        """Whether a claim now could take a row an unsure write may have
        claimed, at a time a read could not tell from the write's."""
        now = self._clock.now()
        return any(claim.claimed_at >= now for claim in self._claims)

    def give_up(self) -> None:
        """What could not be read back is the rescuer's."""
        for claim in self._claims:
            self._give_up_one(claim)
        self._claims.clear()
        self._delay = FIRST_RETRY

    def _give_up_one(self, claim: UnsureClaim) -> None:
        log.warning(
            "%s %r: could not tell whether its inform claimed it (the write's "
            "reply was lost); if it did, the rescuer will retry it",
            claim.kind,
            claim.object_id,
            extra={"kind": claim.kind, "object_id": claim.object_id},
        )
        self._release(claim.namespace, claim.kind)
