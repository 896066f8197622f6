"""Reading and changing resources on Postgres, for the client and the command line."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from ..._types import ResourceRow, ResourceState
from ..params import Change, ResourceFilter, StateCount
from .connections import Conn, Connections, row_from_columns


def filter_params(flt: ResourceFilter) -> dict[str, Any]:
    """The parameters of the ``resource_filter`` fragment."""
    return {
        "kind": flt.kind,
        "namespace": flt.namespace,
        "states": None if flt.states is None else [s.value for s in flt.states],
        "tags": None if flt.tags is None else list(flt.tags),
        "object_ids": None if flt.object_ids is None else list(flt.object_ids),
        "after_id": flt.after_id,
        "limit": flt.limit,
    }


class PostgresInsights:
    """The insights part of :class:`~trio_delta._store.postgres.PostgresStore`."""

    def __init__(self, connections: Connections) -> None:
        self._c = connections

    async def _rows(self, query: str, params: dict[str, Any], what: str) -> list[ResourceRow[Any]]:
        async def run(conn: Conn) -> list[ResourceRow[Any]]:
            cur = await conn.execute(self._c.queries[query], params)
            return [row_from_columns(columns) for columns in await cur.fetchall()]

        return await self._c.on_pool(run, what)

    async def get_resource(self, kind: str, object_id: str) -> ResourceRow[Any] | None:
        rows = await self._rows(
            "get_resource", {"kind": kind, "object_id": object_id}, "get_resource"
        )
        return rows[0] if rows else None

    async def list_resources(self, flt: ResourceFilter) -> list[ResourceRow[Any]]:
        return await self._rows("list_resources", filter_params(flt), "list_resources")

    async def count_states(self, flt: ResourceFilter) -> list[StateCount]:
        rows = await self._c.execute(None, "count_states", filter_params(flt), "counting resources")
        return [
            StateCount(kind, namespace, ResourceState.parse(state), count, oldest)
            for kind, namespace, state, count, oldest in rows
        ]

    async def known_kinds(self) -> list[str]:
        return [row[0] for row in await self._c.execute(None, "known_kinds", {}, "listing kinds")]

    async def change(
        self, change: Change, flt: ResourceFilter, *, now: datetime
    ) -> list[ResourceRow[Any]]:
        params = filter_params(flt.narrowed(change.states))
        params |= {"now": now, "channel": self._c.channel}
        query = change.value
        if change.restarts_to is not None:
            query = "restart"
            params["to_state"] = change.restarts_to.value
        rows = await self._rows(query, params, f"{change.value} resources")
        return sorted(rows, key=lambda r: r.id)
