"""The fetcher: claims work when there is work and room to run it.

It sleeps until one of: a NOTIFY for a namespace it serves, a worker slot
freeing up, the earliest known ``scheduled_at`` (retries with backoff), or
the poll interval (in case a notification was lost). Then it claims at most
the free slots in one store call and hands the rows to the namespace's pool.

The poll is only for stores whose notifications can be lost or leave out
retries coming due (Postgres). On a store that announces every row becoming
claimable (``Store.notifications_reliable``, the memory store) the fetcher
sleeps until a wake or the earliest due row, however far off: under an
autojump clock a simulated day then costs a few thousand wake-ups, not one
per claim loop per simulated second.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
from collections import Counter
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

import trio

from .._errors import StoreError
from .._logs import Throttled, get_logger, resource_fields
from .._store.params import ClaimRequest, ClusterLimit
from .._types import Resource, ResourceState
from .context import EngineContext
from .pauses import Pauses
from .slots import Slots
from .unsure import UnsureClaim, UnsureClaims
from .workers import WorkerPool

log = get_logger("trio_delta.fetcher")


#: Claims a fetcher may have in flight at once. A claim is a round trip of a
#: few milliseconds; with short work, the workers finish a whole claim's rows
#: sooner than that, and with one claim at a time they then sat idle through
#: every round trip. Two claims in flight overlap each round trip with the
#: work of the other's rows (both ask only for free, unreserved slots).
CONCURRENT_CLAIMS = 2
#: At a stop, how long the last read of rows an inform may have claimed
#: may take (seconds) before they are left to the rescuer.
UNSURE_READ_AT_STOP = 1.0
#: How soon to look again at a row that is due but was not claimed (another
#: claimer holds it locked for now).
LOCKED_RETRY = 0.05


class Fetcher:
    def __init__(
        self,
        ctx: EngineContext,
        *,
        pools: Mapping[str, WorkerPool],
        slots: Slots,
        pauses: Pauses,
        concurrent_claims: int = CONCURRENT_CLAIMS,
    ) -> None:
        # Retries of one failure: not a warning each (per client: a
        # throttle shared across clients would hide one's first warning).
        self._storm = Throttled(log)
        self._queue = ctx.store.queue
        self._clock = ctx.clock
        self._client_id = ctx.client_id
        self._observer = ctx.observer
        self.last_claim_at: float | None = None  # trio time of the last claim that worked
        self._pools = pools
        self._slots = slots
        self._pauses = pauses
        self._kinds = ctx.controllers.kinds()
        self._cluster = {
            reg.kind: ClusterLimit(
                reg.settings.global_parallelism,
                None if (rate := reg.settings.rate_limit) is None else float(rate.per_second),
                1 if rate is None else rate.burst,
            )
            for reg in ctx.controllers
            if reg.settings.global_parallelism is not None or reg.settings.rate_limit is not None
        }
        # No poll where nothing can be missed: every wake-up reaches us.
        self._poll_interval = math.inf if ctx.notified else ctx.config.poll_interval
        self._wakes = [trio.Event() for _ in range(concurrent_claims)]
        # One claim takes at most its share of a namespace's workers, so
        # that when all of them free up at once (short work), the claims
        # split them and run side by side instead of one taking everything.
        self._shares = {ns: -(-slots.capacity(ns) // concurrent_claims) for ns in pools}
        self._next_due = math.inf  # trio time of the earliest known scheduled_at
        self._fetching = 0  # claim loops between reserving slots and returning
        for namespace, pool in pools.items():
            # We hold off claiming while a pool's rows wait (see _free_to_claim):
            # its queue running low is a reason to look again. Low is half
            # the rows claimed ahead of the workers (``prefetch``): the
            # claim then comes back before the queue runs dry.
            pool.rows.low_water = (slots.capacity(namespace) - pool.max_workers) // 2
            pool.rows.on_drained = self.wake
        self._stopped = trio.Event()
        self.claimed = 0
        # A single inform claiming as it writes (see reserve_write_claim):
        # set when it has settled; None while none ever was in flight.
        self._write_claim: trio.Event | None = None
        self._woken_during_write_claim = False
        # Such informs that failed in a way that may have committed them
        # (the connection broke as the reply was due). Read back for no
        # longer than half the rescuer's margin: a row handed to a worker
        # later could be rescued while it runs.
        self._unsure = UnsureClaims(
            ctx.store.insights,
            ctx.clock,
            give_up_after=timedelta(seconds=ctx.config.rescue_after / 2),
            take=self._take_written_claim,
            release=slots.release,
        )
        self._finished = False  # run() has returned

    def stop(self) -> None:
        """Finish the claims in flight, if any, then return from :meth:`run`."""
        self._stopped.set()
        self.wake()

    def wake(self) -> None:
        """Look for work now (a NOTIFY, a local inform, a freed slot)."""
        for wake in self._wakes:  # called per freed slot: no generator
            if not wake.is_set():
                break
        else:
            return  # every claim loop will look already
        if not (self._fetching or self._stopped.is_set() or self._worth_a_claim()):
            # A claim now would ask for nothing. What changes that (a freed
            # slot, a queue run dry) wakes us again; with short work, waking
            # both claim loops for nothing after every row was a good part
            # of a drain's cost.
            return
        for wake in self._wakes:
            wake.set()

    def _free_to_claim(self, namespace: str) -> int:
        """How many rows a claim may take for ``namespace`` now."""
        share = self._shares[namespace]
        free = min(self._slots.namespace_free(namespace), share)
        # While rows still wait for the pool's workers, a claim would be for
        # the slot or two freed since the last one (every freed slot wakes
        # us): a round trip for a row or two. Hold off until a whole share
        # is free or the queue runs low; the rows left (the other claim's,
        # with short work) overlap the round trip. Claiming at half a share
        # made twice the round trips for the same rows once workers yield
        # between rows, and a drain lost a fifth of its speed. Low is empty
        # without ``prefetch``; with it, half of it: waiting for the queue to
        # run dry left the workers that freed during the claim's round trip
        # idle, a few milliseconds of every round of I/O-bound work.
        rows = self._pools[namespace].rows
        if free < share and len(rows) > rows.low_water:
            return 0
        return free

    def _worth_a_claim(self) -> bool:
        # Slots first: the cheap test, and the one that fails while rows wait
        # (asked per freed slot: loops, not generators).
        for namespace in self._pools:
            if self._free_to_claim(namespace) > 0:
                break
        else:
            return False
        if not self._slots.capped:
            return bool(self._kinds)
        caps = self._slots.kind_caps()
        return any(caps[k] != 0 for k in self._kinds)

    @property
    def write_claiming(self) -> bool:
        """Whether an inform claiming as it writes is in flight."""
        return self._write_claim is not None and not self._write_claim.is_set()

    def reserve_write_claim(self, kind: str, namespace: str) -> bool:
        """Whether a single inform of ``kind`` into ``namespace`` may claim
        the row it writes, in the same statement; if so, a slot is taken
        for it until :meth:`settle_write_claim`.

        Only when this client holds no row at all and no claim of ours is
        in flight (the caller also checks every outcome is written): then
        a row the write hands back pending, attempted by us at the write's
        time, is one this write claimed, never one of our own claims still
        unfinished. Only when nothing is known due here (as far as our last
        claim saw) and the kind has no cluster-wide bound nor a pause: every
        bound a claim keeps holds (a free slot, the kind's own cap). While
        it is in flight, our claims wait: they could take the very row.
        """
        if (
            self._fetching
            or self.write_claiming
            or self._stopped.is_set()
            or kind not in self._kinds
            or kind in self._cluster
            or namespace not in self._pools
            or self._slots.in_flight()
            or self._next_due <= trio.current_time()
            or self._pauses.covers(kind, namespace)
            or (self._slots.capped and self._slots.kind_caps()[kind] == 0)
        ):
            return False
        self._slots.take(namespace, kind)
        self._write_claim = trio.Event()
        return True

    def settle_write_claim(
        self,
        kind: str,
        namespace: str,
        row: Resource[Any] | None,
        claimed_at: datetime,
        *,
        unsure_of: str | None = None,
    ) -> None:
        """End what :meth:`reserve_write_claim` began: ``row`` (as written,
        or None if the write failed) goes to the pool if the write claimed
        it, at ``claimed_at``; otherwise the slot is free again.
        ``unsure_of``: the object's id, when the write failed in a way that
        may have committed it; the slot stays taken until our next claim
        reads the row (a claim made in the write would otherwise wait for
        the rescuer).
        """
        assert self._write_claim is not None
        self._write_claim.set()
        unsure = False
        if row is None and unsure_of is not None:
            unsure = True
            self._unsure.add(UnsureClaim(kind, namespace, unsure_of, claimed_at))
            self._woken_during_write_claim = True
            if self._finished:  # our stop gave up waiting for this write
                self._unsure.give_up()
        if self._woken_during_write_claim:
            # A wake (a NOTIFY, say) came while our claims waited.
            self._woken_during_write_claim = False
            for wake in self._wakes:
                wake.set()
        if not unsure:
            self._take_written_claim(kind, namespace, row, claimed_at)

    def _take_written_claim(
        self, kind: str, namespace: str, row: Resource[Any] | None, claimed_at: datetime
    ) -> None:
        """``row`` to the pool if a write of ours claimed it at
        ``claimed_at``; else its slot back.

        A row already pending when written is left as it was, and may be
        attempted by our id too: an earlier process's with the same
        ``client_id``, or a claim whose reply was lost. Only a claim made
        at the write's time, attempt 1, is the write's.
        """
        if (
            row is not None
            and row.state is ResourceState.PENDING
            and row.attempted_by == self._client_id
            and row.attempted_at == claimed_at
            and row.attempt == 1
        ):
            self.claimed += 1
            self.last_claim_at = trio.current_time()
            if self._observer is not None:
                self._observer.claimed(namespace, 1)
            try:
                # The worker decodes the object into a row of its own; the
                # caller's result keeps the object it informed.
                self._pools[namespace].rows.send_nowait(dataclasses.replace(row))
                return
            except trio.ClosedResourceError:
                # Only when our stop gave up waiting for this write.
                log.warning(
                    "%s %r: claimed as it was informed, after the workers stopped; "
                    "the rescuer will retry it",
                    kind,
                    row.object_id,
                    extra=resource_fields(row),
                )
        self._slots.release(namespace, kind)
        self.wake()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        try:
            async with trio.open_nursery() as nursery:
                for i in range(len(self._wakes)):
                    nursery.start_soon(self._claim_loop, i)
                task_status.started()
            # An inform claiming as it writes hands its row to the workers,
            # which must still take it.
            if self._write_claim is not None:
                await self._write_claim.wait()
            if self._unsure and not self._unsure.reading:
                # One more read: the workers still take rows until we return.
                with trio.move_on_after(UNSURE_READ_AT_STOP), contextlib.suppress(StoreError):
                    await self._unsure.read()
        finally:
            self._finished = True
            self._unsure.give_up()

    async def _claim_loop(self, i: int) -> None:
        error_delay = 0.05
        while not self._stopped.is_set():
            try:
                drained = await self._fetch_once(i)
                error_delay = 0.05
            except StoreError as exc:
                self._storm.warning("claiming work failed, retrying in %.2fs: %s", error_delay, exc)
                with trio.move_on_after(error_delay):
                    await self._stopped.wait()  # a stop ends the backoff
                error_delay = min(error_delay * 2, 5.0)
                continue
            if not drained:
                # We filled every free slot; there may be more. Go again as
                # soon as a slot frees (the wake) - no poll needed meanwhile.
                deadline = math.inf
            else:
                deadline = min(trio.current_time() + self._poll_interval, self._next_due)
            if self._unsure and not self._unsure.reading:
                # The next read (none while the other loop reads: its hand-over wakes us).
                deadline = min(deadline, max(self._unsure.retry_at, trio.current_time() + 0.001))
            await self._wait(i, deadline)

    async def _wait(self, i: int, deadline: float) -> None:
        if deadline == math.inf:
            await self._wakes[i].wait()  # a cancel scope costs; this needs none
        else:
            with trio.move_on_at(deadline):
                await self._wakes[i].wait()
        if not self._stopped.is_set():
            self._wakes[i] = trio.Event()

    async def _fetch_once(self, i: int) -> bool:
        """Claim into free slots. True when the queue had less than we could take."""
        if self.write_claiming:
            self._woken_during_write_claim = True  # settling it wakes us
            return False
        if self._stopped.is_set() or not self._kinds:
            return False
        if self._unsure:
            await self._unsure.read_when_due()
            if self._unsure.hold_claims():
                return False  # the clock moves on; the wait below is short
        caps = self._slots.kind_caps()
        kinds = {k: caps[k] for k in self._kinds if caps[k] != 0}
        requests: list[ClaimRequest] = []
        for namespace in self._pools:
            free = self._free_to_claim(namespace)
            # Paused work stays unclaimed; a resume wakes us.
            allowed = {k: c for k, c in kinds.items() if not self._pauses.covers(k, namespace)}
            if free > 0 and allowed:
                bounded = {k: b for k, b in self._cluster.items() if k in allowed}
                requests.append(ClaimRequest(namespace, free, allowed, bounded))
        if not requests:
            return False  # all busy or paused: wait for a slot or a resume
        self._fetching += 1
        try:
            return await self._claim(i, requests)
        finally:
            self._fetching -= 1

    async def _next_due_of(self, requests: list[ClaimRequest]) -> datetime | None:
        """The earliest due time of what ``requests`` could take: each
        namespace with its own kinds (a kind paused in one namespace only
        is no reason to look again in the other)."""
        by_kinds: dict[tuple[str, ...], list[str]] = {}
        for request in requests:
            by_kinds.setdefault(tuple(sorted(request.kinds)), []).append(request.namespace)
        times = [
            t
            for kinds, namespaces in by_kinds.items()
            if (t := await self._queue.next_scheduled_at(namespaces, list(kinds))) is not None
        ]
        return min(times, default=None)

    async def _claim(self, i: int, requests: list[ClaimRequest]) -> bool:
        self._wakes[i] = trio.Event()  # a wake from now on means "look again"
        wanted = sum(r.limit for r in requests)
        for request in requests:
            self._slots.reserve(request)
        try:
            resources = await self._queue.claim(
                requests, now=self._clock.now(), client_id=self._client_id
            )
        finally:
            for request in requests:
                self._slots.unreserve(request)
        self.claimed += len(resources)
        self.last_claim_at = trio.current_time()
        if self._observer is not None and resources:
            for namespace, count in Counter(r.namespace for r in resources).items():
                self._observer.claimed(namespace, count)
        self._slots.take_all(resources)
        if len(self._pools) == 1:
            for pool in self._pools.values():
                pool.rows.send_all(resources)
        else:
            for resource in resources:
                self._pools[resource.namespace].rows.send_nowait(resource)
        if len(resources) < wanted:
            # Only what these slots may take: a due row of a kind at its
            # parallelism cap is no reason to look again soon (the end of
            # that kind's work wakes us), and counting it made us claim
            # every LOCKED_RETRY for as long as the cap was reached.
            nxt = await self._next_due_of(requests)
            now = trio.current_time()
            if nxt is None:
                self._next_due = math.inf
            else:
                # Due but not claimed means another client holds it locked
                # right now: look again shortly rather than spin.
                due = self._clock.trio_time(nxt)
                self._next_due = due if due > now else now + min(self._poll_interval, LOCKED_RETRY)
            return True
        return False
