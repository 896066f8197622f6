"""Administration for the ``trio-delta`` command: status and resource changes.

No SQL here: everything goes through the store port's insights and control
parts, the same queries the client runs. This module turns their rows into
plain JSON-ready dicts, so ``--json`` output and tables share one shape.
"""

from __future__ import annotations

import re
import socket
from collections.abc import AsyncGenerator, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

from ._config import check_schema
from ._errors import StoreError
from ._store.dsn import describe_dsn, normalize_dsn, redact, with_connect_timeout
from ._store.params import Change, Pause, ResourceFilter
from ._store.port import Store
from ._types import ResourceRow, ResourceState
from .migrations.runner import Migration, check_version, missing_migrations

#: The states as stored, in the order tables show them.
STATES: tuple[str, ...] = tuple(s.value for s in ResourceState if s is not ResourceState.UNKNOWN)
#: The leader name the engine elects under.
LEADER = "default"

_SPACE = re.compile(r"\s+")


def one_line(text: str) -> str:
    """``text`` redacted and on one line (libpq messages span several)."""
    return _SPACE.sub(" ", redact(text)).strip()


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def _age(now: datetime, value: datetime | None) -> float | None:
    return None if value is None else round((now - value).total_seconds(), 3)


def resource_dict(row: ResourceRow[Any]) -> dict[str, Any]:
    """A resource row as JSON-ready data (the object as plain JSON)."""
    return {
        "id": row.id,
        "kind": row.kind,
        "object_id": row.object_id,
        "namespace": row.namespace,
        "state": row.state.value,
        "attempt": row.attempt,
        "max_attempts": row.max_attempts,
        "tags": list(row.tags),
        "metadata": dict(row.metadata),
        "object": row.object,
        "errors": [
            {"at": e.at.isoformat(), "attempt": e.attempt, "error": e.error, "trace": e.trace}
            for e in row.errors
        ],
        "created_at": _iso(row.created_at),
        "updated_at": _iso(row.updated_at),
        "scheduled_at": _iso(row.scheduled_at),
        "attempted_at": _iso(row.attempted_at),
        "attempted_by": row.attempted_by,
        "synced_at": _iso(row.synced_at),
        "priority": row.priority,
        "snoozes": row.snoozes,
    }


def selection(
    kind: str | None = None,
    namespace: str | None = None,
    states: Sequence[str] | None = None,
    tags: Sequence[str] | None = None,
    object_ids: Sequence[str] | None = None,
    limit: int | None = None,
) -> ResourceFilter:
    """The resource filter of command-line options (states by name)."""
    return ResourceFilter(
        kind=kind,
        namespace=namespace,
        states=tuple(ResourceState(s) for s in states) if states else None,
        tags=tuple(tags) if tags else None,
        object_ids=tuple(object_ids) if object_ids else None,
        limit=limit,
    )


def duration_text(seconds: float | None) -> str:
    """``seconds`` for people: ``4.2s``, ``3m07s``, ``2h05m``, ``1d03h``;
    ``in ...`` when negative (a time still to come)."""
    if seconds is None:
        return "-"
    s = abs(seconds)
    if s < 60:
        text = f"{s:.1f}s"
    elif s < 3600:
        text = f"{int(s // 60)}m{int(s % 60):02d}s"
    elif s < 86400:
        text = f"{int(s // 3600)}h{int(s % 3600 // 60):02d}m"
    else:
        text = f"{int(s // 86400)}d{int(s % 86400 // 3600):02d}h"
    return text if seconds >= 0 else f"in {text}"


def relative_time(now: str, when: str | None) -> str:
    """How long before ``now`` ``when`` was (``3m07s ago``), or how long
    after (``in 3m07s``); both ISO times, as :class:`Admin` returns them."""
    if when is None:
        return "-"
    seconds = (datetime.fromisoformat(now) - datetime.fromisoformat(when)).total_seconds()
    return f"{duration_text(seconds)} ago" if seconds >= 0 else duration_text(seconds)


class Admin:
    """One store, for one command; open it with :meth:`connect`."""

    def __init__(self, store: Store, database: str) -> None:
        self._store = store
        self.schema = store.schema
        self.database = database

    @classmethod
    @asynccontextmanager
    async def connect(
        cls, dsn: str, schema: str, *, pool_size: int = 1
    ) -> AsyncGenerator[Admin, None]:
        """Connect to ``dsn`` (the schema is not checked: see
        :meth:`require_current`); raises :class:`StoreError` with one
        redacted line when that fails."""
        from ._store.postgres import open_postgres_store

        check_schema(schema)
        conninfo = with_connect_timeout(normalize_dsn(dsn))
        database = describe_dsn(conninfo)
        connected = False
        try:
            async with open_postgres_store(
                conninfo, schema=schema, pool_size=pool_size, check_schema=False, writable=False
            ) as store:
                connected = True
                yield cls(store, database)
        except StoreError as exc:
            where = database if connected else f"cannot connect to {database}"
            raise StoreError(f"{where}: {one_line(str(exc))}") from None

    # -- schema -------------------------------------------------------------------

    async def missing_migrations(self) -> tuple[int, list[Migration]]:
        version = await self._store.schema_version()
        return version or 0, missing_migrations(version)

    async def require_current(self) -> int:
        version = await self._store.schema_version()
        check_version(version, self.schema)
        assert version is not None
        return version

    async def known_kinds(self) -> list[str]:
        return await self._store.insights.known_kinds()

    # -- status -------------------------------------------------------------------

    async def status(
        self, *, kind: str | None = None, namespace: str | None = None
    ) -> dict[str, Any]:
        version = await self.require_current()
        now = await self._store.database_now()
        groups: dict[tuple[str, str], dict[str, Any]] = {}
        totals = dict.fromkeys(STATES, 0)
        waiting = snoozed = 0
        for count in await self._store.insights.count_states(
            ResourceFilter(kind=kind, namespace=namespace), now
        ):
            group = groups.setdefault(
                (count.kind, count.namespace),
                {
                    "kind": count.kind,
                    "namespace": count.namespace,
                    "total": 0,
                    "states": dict.fromkeys(STATES, 0),
                    "oldest_scheduled_at": None,
                    "oldest_scheduled_age_seconds": None,
                    "waiting": 0,
                    "snoozed": 0,
                },
            )
            group["waiting"] += count.waiting
            group["snoozed"] += count.snoozed
            waiting += count.waiting
            snoozed += count.snoozed
            state = count.state.value
            group["states"][state] = count.count
            group["total"] += count.count
            totals[state] = totals.get(state, 0) + count.count
            if count.oldest_scheduled_at is not None:
                group["oldest_scheduled_at"] = _iso(count.oldest_scheduled_at)
                group["oldest_scheduled_age_seconds"] = _age(now, count.oldest_scheduled_at)
        controllers = [
            {
                "kind": c.kind,
                "last_inform_at": _iso(c.last_run_at),
                "next_inform_at": _iso(c.next_inform_at),
                "last_error": c.last_error,
                "informing_on": (
                    c.lease_owner
                    if c.lease_owner is not None
                    and c.lease_expires_at is not None
                    and c.lease_expires_at > now
                    else None
                ),
                "requested_at": _iso(c.requested_at),
                "cursor": _iso(c.cursor),
            }
            for c in await self._store.control.list_controllers()
            if kind is None or c.kind == kind
        ]
        leader = await self._store.control.get_leader(LEADER)
        paused = [
            {
                "kind": p.kind,
                "namespace": p.namespace,
                "paused_at": _iso(p.paused_at),
                "paused_by": p.paused_by,
            }
            for p in await self._store.control.list_pauses()
            if (kind is None or p.kind in (None, kind))
            and (namespace is None or p.namespace in (None, namespace))
        ]
        return {
            "schema": self.schema,
            "database": self.database,
            "schema_version": version,
            "now": _iso(now),
            "resources": list(groups.values()),
            "totals": {
                **totals,
                "total": sum(totals.values()),
                "waiting": waiting,
                "snoozed": snoozed,
            },
            "controllers": controllers,
            "paused": paused,
            "leader": None
            if leader is None or leader.expires_at <= now
            else {
                "name": LEADER,
                "id": leader.leader_id,
                "elected_at": _iso(leader.elected_at),
                "expires_at": _iso(leader.expires_at),
                "active": True,
            },
        }

    async def activity(self, minutes: int, namespaces: Sequence[str]) -> dict[str, Any]:
        """Syncs per minute in ``namespaces`` over the last ``minutes``
        (every minute listed, zeros included, oldest first) and the clients
        holding work."""
        now = await self._store.database_now()
        start = now.replace(second=0, microsecond=0) - timedelta(minutes=minutes - 1)
        found = await self._store.insights.activity(start, namespaces)
        per_minute = {minute.astimezone(UTC): count for minute, count in found.synced_per_minute}
        steps = (start.astimezone(UTC) + timedelta(minutes=i) for i in range(minutes))
        return {
            "synced_per_minute": [
                {"minute": _iso(minute), "synced": per_minute.get(minute, 0)} for minute in steps
            ],
            "working": [{"client": client, "pending": n} for client, n in found.working],
        }

    async def count(self, flt: ResourceFilter) -> dict[str, int]:
        """How many resources ``flt`` matches, by state (``limit`` and
        ``after_id`` ignored)."""
        now = await self._store.database_now()
        by_state: dict[str, int] = {}
        for count in await self._store.insights.count_states(flt, now):
            by_state[count.state.value] = by_state.get(count.state.value, 0) + count.count
        return by_state

    # -- pauses -------------------------------------------------------------------

    async def pause(self, pause: Pause, *, by: str = "trio-delta") -> bool:
        """Record ``pause`` as ``by``'s on this host; False when already paused."""
        now = await self._store.database_now()
        by = f"{by}@{socket.gethostname()}"
        return await self._store.control.pause(Pause(pause.kind, pause.namespace, now, by))

    async def resume(self, pause: Pause) -> bool:
        return await self._store.control.resume(pause.kind, pause.namespace)

    # -- resources ----------------------------------------------------------------

    async def list_resources(self, flt: ResourceFilter) -> list[dict[str, Any]]:
        await self.require_current()
        return [resource_dict(r) for r in await self._store.insights.list_resources(flt)]

    async def get_resource(self, kind: str, object_id: str) -> dict[str, Any] | None:
        row = await self._store.insights.get_resource(kind, object_id)
        return None if row is None else resource_dict(row)

    async def states_of(self, kind: str, object_ids: Sequence[str]) -> dict[str, str]:
        rows = await self._store.insights.list_resources(
            ResourceFilter(kind=kind, object_ids=tuple(object_ids))
        )
        return {r.object_id: r.state.value for r in rows}

    async def change(self, change: Change, flt: ResourceFilter) -> list[dict[str, Any]]:
        """Apply ``change`` (see :class:`Change`); running clients are woken
        for rows that became due."""
        await self.require_current()
        now = await self._store.database_now()
        return [resource_dict(r) for r in await self._store.insights.change(change, flt, now=now)]
