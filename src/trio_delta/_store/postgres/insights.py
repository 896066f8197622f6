"""Reading and changing resources on Postgres, for the client and the command line."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from ..._types import ResourceRow, ResourceState
from ..params import Activity, Change, ResourceFilter, StateCount
from .columns import row_from_columns
from .connections import Conn, Connections
from .runners import run_async
from .statements import Target, change_plan, filter_params


class PostgresInsights:
    """The insights part of :class:`~trio_delta._store.postgres.PostgresStore`.

    Queries that take a resource filter are never prepared: a prepared
    statement soon runs a generic plan, which cannot see which filters are
    null, guesses one row, and walks the primary key: counting a million
    resources took 2.2 s that way instead of 0.5 s. Planned with their
    values each time, they cost a fraction of a millisecond more.
    """

    def __init__(self, connections: Connections) -> None:
        self._c = connections

    async def _rows(self, query: str, params: dict[str, Any], what: str) -> list[ResourceRow[Any]]:
        async def run(conn: Conn) -> list[ResourceRow[Any]]:
            cur = await conn.execute(self._c.queries[query], params, prepare=False)
            return [row_from_columns(columns) for columns in await cur.fetchall()]

        return await self._c.on_pool(run, what)

    async def get_resource(self, kind: str, object_id: str) -> ResourceRow[Any] | None:
        rows = await self._rows(
            "get_resource", {"kind": kind, "object_id": object_id}, "get_resource"
        )
        return rows[0] if rows else None

    async def list_resources(self, flt: ResourceFilter) -> list[ResourceRow[Any]]:
        return await self._rows("list_resources", filter_params(flt), "list_resources")

    async def count_states(self, flt: ResourceFilter, now: datetime) -> list[StateCount]:
        params = filter_params(flt) | {"now": now}
        rows = await self._c.execute(
            None, "count_states", params, "counting resources", prepare=False
        )
        return [
            StateCount(kind, namespace, ResourceState.parse(state), count, oldest, waiting, snoozed)
            for kind, namespace, state, count, oldest, waiting, snoozed in rows
        ]

    async def activity(self, since: datetime, namespaces: Sequence[str]) -> Activity:
        synced = await self._c.execute(
            None,
            "synced_per_minute",
            {"since": since, "namespaces": list(namespaces)},
            "counting recent syncs",
            prepare=False,
        )
        working = await self._c.execute(None, "working_clients", {}, "listing working clients")
        return Activity(
            tuple((minute, count) for minute, count in synced),
            tuple((client, count) for client, count in working),
        )

    async def known_kinds(self) -> list[str]:
        return [row[0] for row in await self._c.execute(None, "known_kinds", {}, "listing kinds")]

    async def change(
        self, change: Change, flt: ResourceFilter, *, now: datetime
    ) -> list[ResourceRow[Any]]:
        plan = change_plan(Target(self._c.queries, self._c.channel), change, flt, now)

        async def run(conn: Conn) -> list[ResourceRow[Any]]:
            return await run_async(conn, plan)

        return await self._c.on_pool(run, f"{change.value} resources")
