"""The control plane on Postgres: informer schedule, leader election, maintenance."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import msgspec

from ..._types import ResourceState
from ..params import (
    MAX_ERRORS,
    ControllerState,
    InformClaim,
    InformLease,
    InformRunEnd,
    LeaderState,
    Pause,
    RescueParams,
)
from .connections import Conn, Connections
from .runners import run_async
from .statements import Target, request_inform_plan


def _controller(row: Sequence[Any]) -> ControllerState:
    return ControllerState(
        kind=row[0],
        cursor=row[1],
        next_inform_at=row[2],
        lease_owner=row[3],
        lease_expires_at=row[4],
        requested_at=row[5],
        process_existing=bool(row[6]),
        last_run_at=row[7],
        last_error=row[8],
    )


class PostgresControl:
    """The control part of :class:`~trio_delta._store.postgres.PostgresStore`.

    Informer runs go on the inform lane, election and maintenance on the
    leader lane: a busy pool never delays a lease renewal.
    """

    def __init__(self, connections: Connections) -> None:
        self._c = connections
        self._target = Target(connections.queries, connections.channel)

    # -- informer schedule (the controllers table) ----------------------------------

    async def ensure_controllers(
        self, schedule: Mapping[str, datetime | None], *, now: datetime
    ) -> None:
        await self._c.execute(
            "inform",
            "ensure_controllers",
            {"kind": list(schedule), "next_inform_at": list(schedule.values()), "now": now},
            "registering controllers",
        )

    async def claim_inform(self, lease: InformLease) -> InformClaim | None:
        rows = await self._c.execute(
            "inform",
            "claim_inform",
            {
                "kind": lease.kind,
                "now": lease.now,
                "client_id": lease.client_id,
                "lease_until": lease.lease_until,
            },
            "claiming an informer run",
        )
        if not rows:
            return None
        cursor, requested_at, process_existing, options = rows[0]
        return InformClaim(
            cursor=cursor,
            requested_at=requested_at,
            process_existing=bool(process_existing),
            options=None if options is None else msgspec.json.decode(options),
        )

    async def finish_inform(self, end: InformRunEnd) -> None:
        naive = end.cursor is not None and end.cursor.utcoffset() is None
        await self._c.execute(
            "inform",
            "finish_inform",
            {
                "kind": end.kind,
                "now": end.now,
                "client_id": end.client_id,
                "cursor": None if naive else end.cursor,
                "cursor_naive": end.cursor if naive else None,
                "reschedule": end.reschedule,
                "next_inform_at": end.next_inform_at,
                "requested_at": end.requested_at,
                "error": end.error,
            },
            "finishing an informer run",
        )

    async def request_inform(
        self,
        kind: str,
        *,
        now: datetime,
        process_existing: bool,
        options: Mapping[str, Any] | None,
    ) -> None:
        plan = request_inform_plan(
            self._target, kind, now=now, process_existing=process_existing, options=options
        )

        async def run(conn: Conn) -> None:
            await run_async(conn, plan)

        await self._c.on_pool(run, "requesting an informer run")

    async def get_controller(self, kind: str) -> ControllerState | None:
        rows = await self._c.execute(None, "get_controller", {"kind": kind}, "reading a controller")
        return _controller(rows[0]) if rows else None

    async def list_controllers(self) -> list[ControllerState]:
        rows = await self._c.execute(None, "list_controllers", {}, "listing controllers")
        return [_controller(r) for r in rows]

    # -- leader election ------------------------------------------------------------

    async def elect(
        self, name: str, *, client_id: str, now: datetime, expires_at: datetime
    ) -> bool:
        rows = await self._c.execute(
            "leader",
            "elect",
            {"name": name, "client_id": client_id, "now": now, "expires_at": expires_at},
            "leader election",
        )
        return bool(rows) and rows[0][0] == client_id

    async def resign(self, name: str, *, client_id: str) -> None:
        await self._c.execute(
            "leader",
            "resign",
            {"name": name, "client_id": client_id, "channel": self._c.channel},
            "resigning leadership",
        )

    async def get_leader(self, name: str) -> LeaderState | None:
        rows = await self._c.execute(None, "get_leader", {"name": name}, "reading the leader")
        return LeaderState(*rows[0]) if rows else None

    # -- maintenance ------------------------------------------------------------------

    async def rescue(self, params: RescueParams) -> int:
        rows = await self._c.execute(
            "leader",
            "rescue",
            {
                "now": params.now,
                "now_text": params.now.isoformat(),
                "stuck_before": params.stuck_before,
                "limit": params.limit,
                "error": params.error,
                "max_errors": MAX_ERRORS,
                "channel": self._c.channel,
            },
            "rescuing stuck resources",
        )
        return int(rows[0][0]) if rows else 0

    async def expire(
        self, namespace: str, *, now: datetime, synced_before: datetime, limit: int
    ) -> int:
        rows = await self._c.execute(
            "leader",
            "expire",
            {
                "namespace": namespace,
                "now": now,
                "synced_before": synced_before,
                "limit": limit,
                "channel": self._c.channel,
            },
            "expiring resources",
        )
        return int(rows[0][0]) if rows else 0

    async def clean(
        self, namespace: str, state: ResourceState, *, updated_before: datetime, limit: int
    ) -> int:
        params = {
            "namespace": namespace,
            "state": state.value,
            "updated_before": updated_before,
            "limit": limit,
        }

        async def run(conn: Conn) -> int:
            cur = await conn.execute(self._c.queries["clean"], params)
            return cur.rowcount

        return await self._c.on_lane("leader", run, "cleaning resources")

    # -- pauses ---------------------------------------------------------------------

    async def pause(self, pause: Pause) -> bool:
        (added, _), *_ = await self._c.execute(
            None,
            "pause",
            {
                "kind": pause.kind,
                "namespace": pause.namespace,
                "now": pause.paused_at,
                "by": pause.paused_by,
                "channel": self._c.channel,
            },
            "pausing",
        )
        return bool(added)

    async def resume(self, kind: str | None, namespace: str | None) -> bool:
        (removed, _), *_ = await self._c.execute(
            None,
            "resume",
            {"kind": kind, "namespace": namespace, "channel": self._c.channel},
            "resuming",
        )
        return bool(removed)

    async def list_pauses(self) -> list[Pause]:
        rows = await self._c.execute(None, "list_pauses", {}, "reading pauses")
        return [Pause(*row) for row in rows]
