"""The memory store's control plane: informer schedule, leader, maintenance.

Split from :mod:`.memory` (the resource queue) to keep each module one idea;
:class:`.memory.MemoryStore` mixes it in. Semantics follow the Postgres
adapter's queries of the same names.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import TYPE_CHECKING, Any

import msgspec
import trio

from .._errors import StoreError
from .._types import AttemptError, ResourceState
from .base import MAX_ERRORS, ControllerState, InformClaim, LeaderState, ResourceRecord

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

    from .memory import MemoryTransaction, StoredRow

Key = tuple[str, str]


@dataclass(frozen=True, slots=True)
class ControllerRow:
    state: ControllerState
    options: bytes | None  # JSON, like the jsonb column: every claim decodes a fresh copy


def with_error(errors: tuple[AttemptError, ...], error: AttemptError) -> tuple[AttemptError, ...]:
    """``errors`` plus ``error``; at the cap, the oldest one goes (only one)."""
    return (*errors[1:], error) if len(errors) >= MAX_ERRORS else (*errors, error)


class MemoryControlPlane:
    """The controllers table, the leader table and the maintenance queries."""

    # Provided by MemoryStore.
    _rows: dict[int, StoredRow]
    _ids: dict[Key, int]
    _locks: dict[Key, MemoryTransaction]
    _controllers: dict[str, ControllerRow]
    _leaders: dict[str, LeaderState]

    def _install(self, row: StoredRow) -> None:
        raise NotImplementedError

    def _notify(self, namespaces: Iterable[str]) -> None:
        raise NotImplementedError

    async def _wait_unlocked(self, keys: Sequence[Key], tx: MemoryTransaction | None) -> None:
        raise NotImplementedError

    # -- informer schedule (the controllers table) ---------------------------------

    @staticmethod
    def _blank_controller(kind: str) -> ControllerState:
        return ControllerState(kind=kind, cursor=None, next_inform_at=None, lease_owner=None,
                               lease_expires_at=None, requested_at=None, process_existing=False,
                               last_run_at=None, last_error=None)

    async def ensure_controllers(
        self, schedule: Mapping[str, datetime | None], *, now: datetime
    ) -> None:
        await trio.lowlevel.checkpoint()
        for kind, next_at in schedule.items():
            old = self._controllers.get(kind)
            if old is None:
                state = replace(self._blank_controller(kind), next_inform_at=next_at)
                self._controllers[kind] = ControllerRow(state, None)
            elif (old.state.next_inform_at is None and next_at is not None
                  and old.state.lease_owner is None):
                self._controllers[kind] = replace(
                    old, state=replace(old.state, next_inform_at=next_at))

    async def claim_inform(
        self, kind: str, *, now: datetime, client_id: str, lease_until: datetime
    ) -> InformClaim | None:
        await trio.lowlevel.checkpoint()
        ctl = self._controllers.get(kind)
        if ctl is None:
            return None
        st = ctl.state
        due = (st.next_inform_at is not None and st.next_inform_at <= now) or (
            st.requested_at is not None)
        free = st.lease_expires_at is None or st.lease_expires_at < now
        if not (due and free):
            return None
        self._controllers[kind] = replace(
            ctl, state=replace(st, lease_owner=client_id, lease_expires_at=lease_until))
        options = None if ctl.options is None else msgspec.json.decode(ctl.options)
        return InformClaim(st.cursor, st.requested_at, st.process_existing, options)

    async def finish_inform(
        self,
        kind: str,
        *,
        now: datetime,
        client_id: str,
        cursor: datetime | None,
        reschedule: bool,
        next_inform_at: datetime | None,
        requested_at: datetime | None,
        error: str | None,
    ) -> None:
        await trio.lowlevel.checkpoint()
        ctl = self._controllers.get(kind)
        if ctl is None or ctl.state.lease_owner != client_id:
            return
        st = ctl.state
        served = st.requested_at == requested_at  # SQL: is not distinct from
        self._controllers[kind] = ControllerRow(
            replace(
                st,
                lease_owner=None,
                lease_expires_at=None,
                cursor=st.cursor if cursor is None else cursor,
                next_inform_at=next_inform_at if reschedule else st.next_inform_at,
                requested_at=None if served else st.requested_at,
                process_existing=False if served else st.process_existing,
                last_run_at=now,
                last_error=error,
            ),
            None if served else ctl.options,
        )

    async def request_inform(
        self, kind: str, *, now: datetime, process_existing: bool,
        options: Mapping[str, Any] | None,
    ) -> None:
        await trio.lowlevel.checkpoint()
        encoded = None if options is None else msgspec.json.encode(options)
        old = self._controllers.get(kind)
        if old is None:
            state = replace(self._blank_controller(kind), requested_at=now,
                            process_existing=process_existing)
            self._controllers[kind] = ControllerRow(state, encoded)
        else:
            state = replace(old.state, requested_at=now,
                            process_existing=old.state.process_existing or process_existing)
            self._controllers[kind] = ControllerRow(
                state, encoded if encoded is not None else old.options)
        self._notify([f"inform:{kind}"])

    async def get_controller(self, kind: str) -> ControllerState | None:
        await trio.lowlevel.checkpoint()
        ctl = self._controllers.get(kind)
        return None if ctl is None else ctl.state

    async def list_controllers(self) -> list[ControllerState]:
        await trio.lowlevel.checkpoint()
        return [self._controllers[kind].state for kind in sorted(self._controllers)]

    # -- leader election ---------------------------------------------------------

    async def elect(
        self, name: str, *, client_id: str, now: datetime, expires_at: datetime
    ) -> bool:
        await trio.lowlevel.checkpoint()
        old = self._leaders.get(name)
        if old is None:
            self._leaders[name] = LeaderState(client_id, now, expires_at)
        elif old.leader_id == client_id:
            self._leaders[name] = replace(old, expires_at=expires_at)
        elif old.expires_at < now:
            self._leaders[name] = LeaderState(client_id, now, expires_at)
        else:
            return False
        return True

    async def resign(self, name: str, *, client_id: str) -> None:
        await trio.lowlevel.checkpoint()
        old = self._leaders.get(name)
        if old is not None and old.leader_id == client_id:
            del self._leaders[name]
            self._notify([f"leader:{name}"])

    async def get_leader(self, name: str) -> LeaderState | None:
        await trio.lowlevel.checkpoint()
        return self._leaders.get(name)

    # -- maintenance ----------------------------------------------------------------

    def _oldest(self, want: Callable[[ResourceRecord], bool],
                order: Callable[[ResourceRecord], Any], limit: int) -> list[StoredRow]:
        """Up to ``limit`` rows matching ``want`` by ``order`` then id, skipping
        rows a transaction holds (FOR UPDATE SKIP LOCKED)."""
        if limit < 0:
            raise StoreError("maintenance failed: LIMIT must not be negative")
        rows = [r for r in self._rows.values() if want(r.record) and r.key not in self._locks]
        return sorted(rows, key=lambda r: (order(r.record), r.record.id))[:limit]

    async def rescue(
        self, *, now: datetime, stuck_before: datetime, limit: int, error: str
    ) -> int:
        await trio.lowlevel.checkpoint()
        stuck = self._oldest(
            lambda r: r.state is ResourceState.PENDING and r.attempted_at is not None
            and r.attempted_at < stuck_before,
            lambda r: r.attempted_at, limit)
        namespaces: set[str] = set()
        for row in stuck:
            rec = row.record
            out_of_attempts = rec.attempt >= rec.max_attempts
            failure = AttemptError(at=now, attempt=rec.attempt, error=error, trace="")
            self._install(row.update(
                state=ResourceState.DEGRADED if out_of_attempts else ResourceState.FAILED,
                scheduled_at=now, errors=with_error(rec.errors, failure), updated_at=now))
            if not out_of_attempts:
                namespaces.add(rec.namespace)
        self._notify(namespaces)
        return len(stuck)

    async def expire(
        self, namespace: str, *, now: datetime, synced_before: datetime, limit: int
    ) -> int:
        await trio.lowlevel.checkpoint()
        expiring = self._oldest(
            lambda r: r.namespace == namespace and r.state is ResourceState.SYNCED
            and r.synced_at is not None and r.synced_at < synced_before,
            lambda r: r.synced_at, limit)
        for row in expiring:
            self._install(row.update(state=ResourceState.EXPIRED, attempt=0, errors=(),
                                     scheduled_at=now, updated_at=now))
        self._notify([namespace] if expiring else [])
        return len(expiring)

    async def clean(
        self, namespace: str, state: ResourceState, *, updated_before: datetime, limit: int
    ) -> int:
        await trio.lowlevel.checkpoint()
        doomed = self._oldest(
            lambda r: r.namespace == namespace and r.state == state
            and r.updated_at < updated_before,
            lambda r: 0, limit)  # Postgres deletes in no particular order; here by id
        for row in doomed:
            del self._rows[row.record.id]
            del self._ids[row.key]
        return len(doomed)
