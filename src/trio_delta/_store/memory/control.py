"""The memory store's control plane: informer schedule, leader, maintenance.

Semantics follow the Postgres adapter's queries of the same names.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import replace
from datetime import datetime
from typing import Any

import msgspec
import trio

from ..._errors import StoreError
from ..._types import AttemptError, ResourceRow, ResourceState
from ..params import (
    ControllerState,
    InformClaim,
    InformLease,
    InformRunEnd,
    LeaderState,
    Pause,
    RescueParams,
)
from .tables import ControllerRow, StoredRow, Tables, with_error


class MemoryControl:
    """The control part of :class:`~trio_delta._store.memory.MemoryStore`."""

    def __init__(self, tables: Tables) -> None:
        self._t = tables

    # -- informer schedule (the controllers table) ---------------------------------

    @staticmethod
    def _blank_controller(kind: str) -> ControllerState:
        return ControllerState(
            kind=kind,
            cursor=None,
            next_inform_at=None,
            lease_owner=None,
            lease_expires_at=None,
            requested_at=None,
            process_existing=False,
            last_run_at=None,
            last_error=None,
        )

    async def ensure_controllers(
        self, schedule: Mapping[str, datetime | None], *, now: datetime
    ) -> None:
        await trio.lowlevel.checkpoint()
        for kind, next_at in schedule.items():
            old = self._t.controllers.get(kind)
            if old is None:
                state = replace(self._blank_controller(kind), next_inform_at=next_at)
                self._t.controllers[kind] = ControllerRow(state, None)
            elif (
                old.state.next_inform_at is None
                and next_at is not None
                and old.state.lease_owner is None
            ):
                self._t.controllers[kind] = replace(
                    old, state=replace(old.state, next_inform_at=next_at)
                )

    async def claim_inform(self, lease: InformLease) -> InformClaim | None:
        await trio.lowlevel.checkpoint()
        kind, now = lease.kind, lease.now
        ctl = self._t.controllers.get(kind)
        if ctl is None:
            return None
        st = ctl.state
        due = (st.next_inform_at is not None and st.next_inform_at <= now) or (
            st.requested_at is not None
        )
        free = st.lease_expires_at is None or st.lease_expires_at < now
        if not (due and free):
            return None
        self._t.controllers[kind] = replace(
            ctl, state=replace(st, lease_owner=lease.client_id, lease_expires_at=lease.lease_until)
        )
        options = None if ctl.options is None else msgspec.json.decode(ctl.options)
        return InformClaim(st.cursor, st.requested_at, st.process_existing, options)

    async def finish_inform(self, end: InformRunEnd) -> None:
        await trio.lowlevel.checkpoint()
        ctl = self._t.controllers.get(end.kind)
        if ctl is None or ctl.state.lease_owner != end.client_id:
            return
        cursor, requested_at, now = end.cursor, end.requested_at, end.now
        st = ctl.state
        served = st.requested_at == requested_at  # SQL: is not distinct from
        self._t.controllers[end.kind] = ControllerRow(
            replace(
                st,
                lease_owner=None,
                lease_expires_at=None,
                cursor=st.cursor if cursor is None else cursor,
                next_inform_at=end.next_inform_at if end.reschedule else st.next_inform_at,
                requested_at=None if served else st.requested_at,
                process_existing=False if served else st.process_existing,
                last_run_at=now,
                last_error=end.error,
            ),
            None if served else ctl.options,
        )

    async def request_inform(
        self,
        kind: str,
        *,
        now: datetime,
        process_existing: bool,
        options: Mapping[str, Any] | None,
    ) -> None:
        await trio.lowlevel.checkpoint()
        encoded = None if options is None else msgspec.json.encode(options)
        old = self._t.controllers.get(kind)
        if old is None:
            state = replace(
                self._blank_controller(kind), requested_at=now, process_existing=process_existing
            )
            self._t.controllers[kind] = ControllerRow(state, encoded)
        else:
            state = replace(
                old.state,
                requested_at=now,
                process_existing=old.state.process_existing or process_existing,
            )
            self._t.controllers[kind] = ControllerRow(
                state, encoded if encoded is not None else old.options
            )
        self._t.notify([f"inform:{kind}"])

    async def get_controller(self, kind: str) -> ControllerState | None:
        await trio.lowlevel.checkpoint()
        ctl = self._t.controllers.get(kind)
        return None if ctl is None else ctl.state

    async def list_controllers(self) -> list[ControllerState]:
        await trio.lowlevel.checkpoint()
        return [self._t.controllers[kind].state for kind in sorted(self._t.controllers)]

    # -- leader election ---------------------------------------------------------

    async def elect(
        self, name: str, *, client_id: str, now: datetime, expires_at: datetime
    ) -> bool:
        await trio.lowlevel.checkpoint()
        old = self._t.leaders.get(name)
        if old is None:
            self._t.leaders[name] = LeaderState(client_id, now, expires_at)
        elif old.leader_id == client_id:
            # Never back: a late renewal must not shorten a newer lease.
            self._t.leaders[name] = replace(old, expires_at=max(old.expires_at, expires_at))
        elif old.expires_at < now:
            self._t.leaders[name] = LeaderState(client_id, now, expires_at)
        else:
            return False
        return True

    async def resign(self, name: str, *, client_id: str) -> None:
        await trio.lowlevel.checkpoint()
        old = self._t.leaders.get(name)
        if old is not None and old.leader_id == client_id:
            del self._t.leaders[name]
            self._t.notify([f"leader:{name}"])

    async def get_leader(self, name: str) -> LeaderState | None:
        await trio.lowlevel.checkpoint()
        return self._t.leaders.get(name)

    # -- maintenance ----------------------------------------------------------------

    def _oldest(
        self,
        want: Callable[[ResourceRow[Any]], bool],
        order: Callable[[ResourceRow[Any]], Any],
        limit: int,
    ) -> list[StoredRow]:
        """Up to ``limit`` rows matching ``want`` by ``order`` then id, skipping
        rows a transaction holds (FOR UPDATE SKIP LOCKED)."""
        if limit < 0:
            raise StoreError("maintenance failed: LIMIT must not be negative")
        rows = [r for r in self._t.rows.values() if want(r.row) and r.key not in self._t.locks]
        return sorted(rows, key=lambda r: (order(r.row), r.row.id))[:limit]

    async def rescue(self, params: RescueParams) -> int:
        await trio.lowlevel.checkpoint()
        now, stuck_before, limit, error = (
            params.now,
            params.stuck_before,
            params.limit,
            params.error,
        )
        stuck = self._oldest(
            lambda r: (
                r.state is ResourceState.PENDING
                and r.attempted_at is not None
                and r.attempted_at < stuck_before
            ),
            lambda r: r.attempted_at,
            limit,
        )
        namespaces: set[str] = set()
        for row in stuck:
            rec = row.row
            out_of_attempts = rec.attempt >= rec.max_attempts
            failure = AttemptError(at=now, attempt=rec.attempt, error=error, trace="")
            self._t.install(
                row.update(
                    state=ResourceState.DEGRADED if out_of_attempts else ResourceState.FAILED,
                    scheduled_at=now,
                    errors=with_error(rec.errors, failure),
                    updated_at=now,
                )
            )
            if not out_of_attempts:
                namespaces.add(rec.namespace)
        self._t.notify(namespaces)
        return len(stuck)

    async def expire(
        self, namespace: str, *, now: datetime, synced_before: datetime, limit: int
    ) -> int:
        await trio.lowlevel.checkpoint()
        expiring = self._oldest(
            lambda r: (
                r.namespace == namespace
                and r.state is ResourceState.SYNCED
                and r.synced_at is not None
                and r.synced_at < synced_before
            ),
            lambda r: r.synced_at,
            limit,
        )
        for row in expiring:
            self._t.install(
                row.update(
                    state=ResourceState.EXPIRED,
                    attempt=0,
                    errors=(),
                    scheduled_at=now,
                    updated_at=now,
                )
            )
        self._t.notify([namespace] if expiring else [])
        return len(expiring)

    async def clean(
        self, namespace: str, state: ResourceState, *, updated_before: datetime, limit: int
    ) -> int:
        await trio.lowlevel.checkpoint()
        doomed = self._oldest(
            lambda r: (
                r.namespace == namespace and r.state == state and r.updated_at < updated_before
            ),
            lambda r: 0,
            limit,
        )  # Postgres deletes in no particular order; here by id
        for row in doomed:
            self._t.remove(row)
        return len(doomed)

    # -- pauses ---------------------------------------------------------------------

    async def pause(self, pause: Pause) -> bool:
        await trio.lowlevel.checkpoint()
        key = (pause.kind, pause.namespace)
        if key in self._t.pauses:
            return False
        self._t.pauses[key] = pause
        self._t.notify(["pause:"])
        return True

    async def resume(self, kind: str | None, namespace: str | None) -> bool:
        await trio.lowlevel.checkpoint()
        if self._t.pauses.pop((kind, namespace), None) is None:
            return False
        self._t.notify(["pause:"])
        return True

    async def list_pauses(self) -> list[Pause]:
        await trio.lowlevel.checkpoint()
        return sorted(self._t.pauses.values(), key=lambda p: (p.kind or "", p.namespace or ""))
