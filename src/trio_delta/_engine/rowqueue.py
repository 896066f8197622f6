"""The queue between the fetcher and a namespace's workers.

A Trio memory channel hands each item sent to a waiting receiver at once:
a claim of 250 rows woke 250 parked workers, each for one row, a task
switch and a park per resource (~7 us of a no-op resource's ~30). This
queue wakes one worker at a time instead. A woken worker takes a row and,
if rows remain, wakes one more before it starts its work: when work awaits
something (real work), the next worker runs then and takes the next row, so
every row still starts within a scheduler pass or so of the previous one;
when work returns at once, the first worker carries on through the rows
itself and the second finds little or nothing left.

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
from collections.abc import Callable
from typing import Any

import trio

from .._types import Resource


class RowQueue:
    def __init__(self, spawn: Callable[[], bool]) -> None:
        """``spawn()`` starts a new worker, which calls :meth:`started`
        first; it returns False when the pool has all its workers."""
        self._spawn = spawn
        self._rows: deque[Resource[Any]] = deque()
        self._parked: deque[trio.lowlevel.Task] = deque()
        self._waking = 0  # workers woken or started that have not run yet
        self.closed = trio.Event()
        self.wakes = 0  # parked workers woken, for tests and profiling

    def send_nowait(self, resource: Resource[Any]) -> None:
        if self.closed.is_set():
            raise trio.ClosedResourceError("the worker pool is closed")
        self._rows.append(resource)
        self._wake_one()

    def close(self) -> None:
        """No more rows; workers take what is queued, then :meth:`take`
        returns None."""
        self.closed.set()
        while self._parked:
            self._waking += 1
            trio.lowlevel.reschedule(self._parked.popleft())

    def drain(self) -> list[Resource[Any]]:
        """Remove and return every queued row (for a forced stop whose
        workers are stuck in work that ignores cancellation: no worker may
        ever come for them)."""
        rows = list(self._rows)
        self._rows.clear()
        return rows

    def _wake_one(self) -> None:
        # One on its way is enough: it wakes the next if rows remain.
        if self._waking:
            return
        if self._parked:
            self._waking += 1
            self.wakes += 1
            trio.lowlevel.reschedule(self._parked.popleft())
        elif not self.closed.is_set() and self._spawn():
            self._waking += 1

    def started(self) -> None:
        """A worker made by ``spawn`` is running."""
        self._waking -= 1

    async def take(self) -> Resource[Any] | None:
        """The next row (without a checkpoint when one is queued), or None
        once the queue is closed and empty."""
        while True:
            if self._rows:
                record = self._rows.popleft()
                if self._rows:
                    self._wake_one()
                return record
            if self.closed.is_set():
                return None
            task = trio.lowlevel.current_task()
            self._parked.append(task)

            def abort(_: trio.lowlevel.RaiseCancelT, task: trio.lowlevel.Task = task
                      ) -> trio.lowlevel.Abort:
                self._parked.remove(task)
                return trio.lowlevel.Abort.SUCCEEDED

            await trio.lowlevel.wait_task_rescheduled(abort)
            self._waking -= 1
