"""Leader election in a table with a TTL.

Elect by insert-if-absent-or-expired, renew every third of the TTL, resign
on stop with a NOTIFY so a follower takes over at once. Leadership is judged
against our own clock from the moment we *sent* the winning statement: if a
renewal cannot land before that lease runs out (the database is unreachable,
say), we stop acting as leader at the expiry even without hearing back, so
two clients never act as leader at once.
"""

from __future__ import annotations

from datetime import timedelta

import trio

from .._errors import StoreError
from .._logs import Throttled, get_logger
from .clock import ClockSync
from .context import EngineContext

log = get_logger("trio_delta.leader")

LEADER_NAME = "default"


class LeaderElector:
    def __init__(self, ctx: EngineContext, clock_sync: ClockSync) -> None:
        # Retries of one failure: not a warning each (per client: a
        # throttle shared across clients would hide one's first warning).
        self._storm = Throttled(log)
        self._control = ctx.store.control
        self._clock_sync = clock_sync
        self._clock = ctx.clock
        self._client_id = ctx.client_id
        self._ttl = ctx.config.leader_ttl
        self._lease_end = -1.0  # trio time our current lease runs out
        self._wake = trio.Event()
        self.changed = trio.Event()
        """Set (and replaced) whenever leadership is won or lost."""

    @property
    def lease_left(self) -> float | None:
        """Seconds until the lease lapses unless renewed; None when not leading."""
        left = self._lease_end - trio.current_time()
        return left if left > 0 else None

    @property
    def is_leader(self) -> bool:
        try:
            now = trio.current_time()
        except RuntimeError:
            # Asked from outside Trio (a metrics exporter's thread, or after
            # the run): as of the last election.
            return self._lease_end > 0
        return now < self._lease_end

    def wake(self) -> None:
        """A leader resigned: try to take over now."""
        self._wake.set()

    def _signal(self) -> None:
        self.changed.set()
        self.changed = trio.Event()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        while True:
            was_leader = self.is_leader
            sent_at = trio.current_time()
            settled = waited = False
            # One cancel scope per round, first with the election's deadline,
            # then with the wait's: a round runs every third of the TTL for as
            # long as the client lives, and under an autojump clock a second
            # scope was a good part of what a simulated day cost.
            # A renewal that cannot land before our lease ends is a loss.
            with trio.CancelScope(
                deadline=self._lease_end if was_leader else sent_at + self._ttl
            ) as scope:
                won = False
                try:
                    # Leases are compared across clients: judge them by the
                    # database's time, not a clock that may have drifted
                    # (checked once a lease, not every round: a round trip).
                    await self._clock_sync.sync(max_age=self._ttl)
                    now = self._clock.now()
                    won = await self._control.elect(
                        LEADER_NAME,
                        client_id=self._client_id,
                        now=now,
                        expires_at=now + timedelta(seconds=self._ttl),
                    )
                except StoreError as exc:
                    self._storm.warning("leader election failed: %s", exc)
                self._settle(won, was_leader, sent_at)
                settled = True
                if not scope.cancel_called:  # else its deadline came with the result
                    scope.deadline = trio.current_time() + self._ttl / 3
                    waited = True
                    await self._wake.wait()
            if not settled:  # the election ran out of time
                self._settle(False, was_leader, sent_at)
            if not waited:
                with trio.move_on_after(self._ttl / 3):
                    await self._wake.wait()

    def _settle(self, won: bool, was_leader: bool, sent_at: float) -> None:
        """Record an election's result; a wake from now on ends the wait."""
        if won:
            self._lease_end = sent_at + self._ttl
            if not was_leader:
                log.info("client %s is now the leader", self._client_id)
                self._signal()
        else:
            self._lease_end = -1.0
            if was_leader:
                log.warning("client %s lost leadership", self._client_id)
                self._signal()
        self._wake = trio.Event()

    async def resign(self) -> None:
        """Give up leadership, if held; bounded, for use in shutdown."""
        if self._lease_end < 0:
            return
        self._lease_end = -1.0
        self._signal()
        with trio.move_on_after(2.0):
            try:
                await self._control.resign(LEADER_NAME, client_id=self._client_id)
                log.info("client %s resigned leadership", self._client_id)
            except StoreError as exc:
                log.warning("resigning leadership failed (it expires by itself): %s", exc)
