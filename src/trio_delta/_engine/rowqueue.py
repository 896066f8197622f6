"""The queue between the fetcher and a namespace's workers.

A Trio memory channel hands each item sent to a waiting receiver at once:
a claim of 250 rows woke 250 parked workers, each for one row, a task
switch and a park per resource (~7 us of a no-op resource's ~30). This
queue wakes a few workers at a time instead (:data:`TAKERS_AT_ONCE`). A
worker takes a row and, if rows remain, wakes one more before it starts its
work: when work awaits something (real work), the next workers run then
and take the next rows; when work returns at once, the workers carry on
through the rows themselves.

:meth:`RowQueue.take` checkpoints like a memory channel's ``receive()``,
even with a row waiting, so a worker carrying on through the rows lets the
others run after each row. Each checkpoint costs a scheduler pass; with a
few workers taking rows side by side, each pass serves all of them (one
worker alone paid a pass per row: a drain lost a tenth of its speed).
Workers in their checkpoint, or woken and not yet running, count against
the few, so instant work never wakes workers by the hundred.

Worker tasks are started on demand, up to the pool's ``max_workers``: when a
row needs a worker and none is parked, the queue asks the pool for a new one
(``spawn``). With instant work a pool of 500 runs one or two tasks, and
a client starts no task before it has a row for it.

Rows never outnumber free slots (the fetcher claims only those), so a
queued row always has a worker coming: one woken or being started, or one
that is busy and will look again when its work ends.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

import trio

from .._types import Resource

#: Most workers woken, or between taking a row and starting its work, at
#: once (8 and 16 drained no-op work alike, 1 at 0.85 of the speed).
TAKERS_AT_ONCE = 8


class RowQueue:
    def __init__(self, spawn: Callable[[], bool]) -> None:
        """``spawn()`` starts a new worker, which calls :meth:`started`
        first; it returns False when the pool has all its workers."""
        self._spawn = spawn
        self._rows: deque[Resource[Any]] = deque()
        self._lot = trio.lowlevel.ParkingLot()
        self._waking = 0  # workers woken or started that have not run yet
        self._yielding = 0  # takers in the schedule point after taking a row
        self.closed = trio.Event()
        self.wakes = 0  # parked workers woken, for tests and profiling
        self.on_drained: Callable[[], None] | None = None
        """Called when a taker leaves at most :attr:`low_water` rows queued."""
        self.low_water = 0

    def send_nowait(self, record: Resource[Any]) -> None:
        self.send_all((record,))

    def send_all(self, records: Sequence[Resource[Any]]) -> None:
        """Queue ``records`` (a claim's rows), waking workers for them as
        sending them one by one would."""
        if self.closed.is_set():
            raise trio.ClosedResourceError("the worker pool is closed")
        self._rows.extend(records)
        # Each pass wakes at most one worker, and none past TAKERS_AT_ONCE.
        for _ in range(min(len(records), TAKERS_AT_ONCE)):
            self._pass_on()

    def close(self) -> None:
        """No more rows; workers take what is queued, then :meth:`take`
        returns None."""
        self.closed.set()
        self._waking += len(self._lot.unpark_all())

    def __len__(self) -> int:
        """Rows waiting for a worker."""
        return len(self._rows)

    def _wake_one(self) -> None:
        if self._lot:
            self._waking += 1
            self.wakes += 1
            self._lot.unpark()
        elif not self.closed.is_set() and self._spawn():
            self._waking += 1

    def started(self) -> None:
        """A worker made by ``spawn`` is running."""
        self._waking -= 1

    def queued(self) -> list[Resource[Any]]:
        """The rows waiting for a worker."""
        return list(self._rows)

    def remove(self, resource_id: int) -> Resource[Any] | None:
        """Take the queued row ``resource_id`` out (its resource was deleted
        while it waited for a worker), or None if it is not queued."""
        for record in self._rows:
            if record.id == resource_id:
                self._rows.remove(record)
                return record
        return None

    def drain(self) -> list[Resource[Any]]:
        """Remove and return every queued row (for a forced stop whose
        workers are stuck in work that ignores cancellation: no worker may
        ever come for them)."""
        rows = list(self._rows)
        self._rows.clear()
        return rows

    async def take(self) -> Resource[Any] | None:
        """The next row, or None once the queue is closed and empty.

        A checkpoint even when a row is waiting, as ``receive()`` of a Trio
        memory channel: a cancel point before, a schedule point after (so a
        worker carrying on through rows lets other tasks run between them).
        """
        await trio.lowlevel.checkpoint_if_cancelled()
        rows = self._rows
        if rows:
            # _popleft and _pass_on written out: this is once per row.
            record = rows.popleft()
            if len(rows) <= self.low_water and self.on_drained is not None:
                self.on_drained()
            self._yielding += 1
            await trio.lowlevel.cancel_shielded_checkpoint()
            self._yielding -= 1
            if rows and self._yielding + self._waking < TAKERS_AT_ONCE:
                self._wake_one()
            return record
        while True:
            if self.closed.is_set():
                return None
            await self._lot.park()
            self._waking -= 1
            if self._rows:
                record = self._popleft()
                self._pass_on()
                return record

    def _popleft(self) -> Resource[Any]:
        record = self._rows.popleft()
        if len(self._rows) <= self.low_water and self.on_drained is not None:
            self.on_drained()
        return record

    def _pass_on(self) -> None:
        """If rows wait, make sure a worker comes for them (a taker calls
        this before it starts its work), up to :data:`TAKERS_AT_ONCE` on
        their way: waking one more for each row woke and started workers by
        the hundred when the work was instant, each to find the rows taken
        by the others."""
        if self._rows and self._yielding + self._waking < TAKERS_AT_ONCE:
            self._wake_one()
