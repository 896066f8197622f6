"""Reading and changing resources in the memory store, as the Postgres adapter does."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import trio

from ..._errors import StoreError
from ..._types import ResourceRow, ResourceState
from ..params import Activity, Change, ResourceFilter, StateCount
from .tables import StoredRow, Tables


def matches(row: ResourceRow[Any], flt: ResourceFilter) -> bool:
    """The ``resource_filter`` fragment of the Postgres queries, in Python."""
    return (
        (flt.kind is None or row.kind == flt.kind)
        and (flt.namespace is None or row.namespace == flt.namespace)
        and (flt.states is None or row.state in flt.states)
        and (flt.tags is None or set(flt.tags) <= set(row.tags))
        and (flt.object_ids is None or row.object_id in flt.object_ids)
        and (flt.id_contains is None or flt.id_contains in row.object_id)
        and (flt.after_id is None or row.id > flt.after_id)
    )


class MemoryInsights:
    """The insights part of :class:`~trio_delta._store.memory.MemoryStore`."""

    def __init__(self, tables: Tables) -> None:
        self._t = tables

    def _select(self, flt: ResourceFilter) -> list[StoredRow]:
        if flt.limit is not None and flt.limit < 0:
            raise StoreError("reading resources failed: LIMIT must not be negative")
        out: list[StoredRow] = []
        for row_id in sorted(self._t.rows):
            if flt.limit is not None and len(out) >= flt.limit:
                break
            stored = self._t.rows[row_id]
            if matches(stored.row, flt):
                out.append(stored)
        return out

    async def get_resource(self, kind: str, object_id: str) -> ResourceRow[Any] | None:
        await trio.lowlevel.checkpoint()
        stored = self._t.view((kind, object_id), None)
        return None if stored is None else stored.snapshot()

    async def list_resources(self, flt: ResourceFilter) -> list[ResourceRow[Any]]:
        await trio.lowlevel.checkpoint()
        return [stored.snapshot() for stored in self._select(flt)]

    async def count_states(self, flt: ResourceFilter, now: datetime) -> list[StateCount]:
        await trio.lowlevel.checkpoint()
        counts: Counter[tuple[str, str, ResourceState]] = Counter()
        waiting: Counter[tuple[str, str, ResourceState]] = Counter()
        snoozed: Counter[tuple[str, str, ResourceState]] = Counter()
        oldest: dict[tuple[str, str, ResourceState], datetime] = {}
        for stored in self._t.rows.values():
            row = stored.row
            if not matches(row, flt):
                continue
            key = (row.kind, row.namespace, row.state)
            counts[key] += 1
            if row.state is ResourceState.SCHEDULED and (
                key not in oldest or row.scheduled_at < oldest[key]
            ):
                oldest[key] = row.scheduled_at
            if row.state is ResourceState.SCHEDULED and row.scheduled_at > now:
                waiting[key] += 1
                snoozed[key] += row.snoozes > 0
        return [
            StateCount(*key, counts[key], oldest.get(key), waiting[key], snoozed[key])
            for key in sorted(counts)
        ]

    async def activity(self, since: datetime, namespaces: Sequence[str]) -> Activity:
        await trio.lowlevel.checkpoint()
        minutes: Counter[datetime] = Counter()
        working: Counter[str] = Counter()
        for stored in self._t.rows.values():
            row = stored.row
            if (
                row.state is ResourceState.SYNCED
                and row.namespace in namespaces
                and row.synced_at is not None
                and row.synced_at >= since
                and row.updated_at >= since
            ):
                minutes[row.synced_at.replace(second=0, microsecond=0)] += 1
            if row.state is ResourceState.PENDING and row.attempted_by is not None:
                working[row.attempted_by] += 1
        return Activity(tuple(sorted(minutes.items())), tuple(sorted(working.items())))

    async def known_kinds(self) -> list[str]:
        await trio.lowlevel.checkpoint()
        kinds = set(self._t.controllers) | {s.row.kind for s in self._t.rows.values()}
        return sorted(kinds)

    async def change(
        self, change: Change, flt: ResourceFilter, *, now: datetime
    ) -> list[ResourceRow[Any]]:
        await trio.lowlevel.checkpoint()
        narrowed = flt.narrowed(change.states)
        await self._t.wait_unlocked([s.key for s in self._select(narrowed)], None)
        # Nothing awaits from here on: the change is atomic.
        out: list[ResourceRow[Any]] = []
        woken: set[str] = set()
        for stored in self._select(narrowed):
            if change.restarts_to is None and stored.row.state is ResourceState.PENDING:
                woken.add(f"cancel:{stored.row.id}")  # its worker is told to stop
            if change is Change.HARD_DELETE:
                self._t.remove(stored)
                out.append(stored.snapshot())
                continue
            if change.restarts_to is None:
                stored = stored.update(state=ResourceState.DELETED, updated_at=now)
            else:
                stored = stored.update(
                    state=change.restarts_to, attempt=0, errors=(), scheduled_at=now, updated_at=now
                )
                woken.add(stored.row.namespace)
            self._t.install(stored)
            out.append(stored.snapshot())
        self._t.notify(woken)
        return out
