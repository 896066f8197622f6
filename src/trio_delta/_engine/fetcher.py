"""The fetcher: claims work when there is work and room to run it.

It sleeps until one of: a NOTIFY for a namespace it serves, a worker slot
freeing up, the earliest known ``scheduled_at`` (retries with backoff), or
the poll interval (in case a notification was lost). Then it claims at most
the free slots in one store call and hands the rows to the namespace's pool.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping

import trio

from .._errors import StoreError
from .._store.base import ClaimRequest, Store
from .clock import Clock
from .slots import Slots
from .workers import WorkerPool

log = logging.getLogger("trio_delta.fetcher")


class Fetcher:
    def __init__(
        self,
        store: Store,
        clock: Clock,
        client_id: str,
        *,
        pools: Mapping[str, WorkerPool],
        slots: Slots,
        kinds: tuple[str, ...],
        poll_interval: float,
    ) -> None:
        self._store = store
        self._clock = clock
        self._client_id = client_id
        self._pools = pools
        self._slots = slots
        self._kinds = kinds
        self._poll_interval = poll_interval
        self._wake = trio.Event()
        self._next_due = math.inf  # trio time of the earliest known scheduled_at
        self._stopping = False
        self.claimed = 0
        self.fetches = 0

    def stop(self) -> None:
        """Finish the claim in flight, if any, then return from :meth:`run`."""
        self._stopping = True
        self._wake.set()

    def wake(self) -> None:
        """Look for work now (a NOTIFY, a local inform, a freed slot)."""
        self._wake.set()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        error_delay = 0.05
        while not self._stopping:
            try:
                drained = await self._fetch_once()
                error_delay = 0.05
            except StoreError as exc:
                log.warning("claiming work failed, retrying in %.2fs: %s", error_delay, exc)
                await trio.sleep(error_delay)
                error_delay = min(error_delay * 2, 5.0)
                continue
            if not drained:
                # We filled every free slot; there may be more. Go again as
                # soon as a slot frees (the wake) - no poll needed meanwhile.
                await self._wait(math.inf)
            else:
                deadline = min(trio.current_time() + self._poll_interval, self._next_due)
                await self._wait(deadline)

    async def _wait(self, deadline: float) -> None:
        with trio.move_on_at(deadline):
            await self._wake.wait()
        if not self._stopping:
            self._wake = trio.Event()

    async def _fetch_once(self) -> bool:
        """Claim into free slots. True when the queue had less than we could take."""
        if self._stopping or not self._kinds:
            return False
        caps = self._slots.kind_caps()
        requests: list[ClaimRequest] = []
        for namespace in self._pools:
            free = self._slots.namespace_free(namespace)
            kinds = {k: caps[k] for k in self._kinds if caps[k] != 0}
            if free > 0 and kinds:
                requests.append(ClaimRequest(namespace, free, kinds))
        if not requests:
            return False  # all busy: wait for a slot
        self._wake = trio.Event()  # a wake from now on means "look again"
        wanted = sum(r.limit for r in requests)
        records = await self._store.claim(requests, now=self._clock.now(),
                                          client_id=self._client_id)
        self.fetches += 1
        self.claimed += len(records)
        for record in records:
            self._slots.take(record.namespace, record.kind)
            self._pools[record.namespace].send.send_nowait(record)
        if len(records) < wanted:
            nxt = await self._store.next_scheduled_at(
                [r.namespace for r in requests], self._kinds
            )
            now = trio.current_time()
            if nxt is None:
                self._next_due = math.inf
            else:
                # Due but not claimed means another client holds it locked
                # right now: look again shortly rather than spin.
                due = self._clock.trio_time(nxt)
                self._next_due = due if due > now else now + min(self._poll_interval, 0.05)
            return True
        return False
