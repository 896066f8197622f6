"""Administration for the ``trio-delta`` command: status and resource edits.

Synchronous psycopg (the command needs no Trio for these). The SQL lives as
named queries in ``_store/sql/admin.sql``; values are only ever bound
parameters and the schema only a :class:`psycopg.sql.Identifier`. Results are
plain JSON-ready dicts, so ``--json`` output and tables share one shape.
"""

from __future__ import annotations

import re
from collections.abc import Generator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from importlib import resources
from typing import Any

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg.rows import dict_row

from ._config import check_schema
from ._errors import NotMigratedError, StoreError
from ._store.dsn import describe_dsn, normalize_dsn, redact
from ._store.queries import parse_named_queries
from ._types import ResourceState
from .migrations.runner import LATEST_VERSION, Migration, migrations

#: The states as stored, in the order tables show them.
STATES: tuple[str, ...] = tuple(s.value for s in ResourceState if s is not ResourceState.UNKNOWN)
#: Seconds to wait for a connection unless the DSN says otherwise.
CONNECT_TIMEOUT = 5

_SPACE = re.compile(r"\s+")


def one_line(text: str) -> str:
    """``text`` redacted and on one line (libpq messages span several)."""
    return _SPACE.sub(" ", redact(text)).strip()


def notify_channel(schema: str) -> str:
    """The NOTIFY channel running clients listen on (see ``_store.postgres``)."""
    from ._store.postgres import notify_channel as channel

    return channel(schema)


@cache
def _raw_queries() -> dict[str, str]:
    text = resources.files("trio_delta._store").joinpath("sql/admin.sql").read_text("utf-8")
    return parse_named_queries(text)


def _compose(schema: str) -> dict[str, sql.Composed]:
    ident = sql.Identifier(schema)
    return {name: sql.SQL(body).format(schema=ident)  # pyright: ignore[reportArgumentType]
            for name, body in _raw_queries().items()}


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def _age(now: datetime, value: datetime | None) -> float | None:
    return None if value is None else round((now - value).total_seconds(), 3)


@dataclass(frozen=True, slots=True)
class Selection:
    """Which resources a command acts on; None matches everything."""

    kind: str | None = None
    namespace: str | None = None
    states: tuple[str, ...] | None = None
    tags: tuple[str, ...] | None = None
    object_ids: tuple[str, ...] | None = None
    limit: int | None = None

    @property
    def is_everything(self) -> bool:
        return (self.kind, self.namespace, self.states, self.tags, self.object_ids) == (
            None, None, None, None, None)

    def params(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "namespace": self.namespace,
            "states": list(self.states) if self.states else None,
            "tags": list(self.tags) if self.tags else None,
            "object_ids": list(self.object_ids) if self.object_ids else None,
            "limit": self.limit,
        }


def resource_dict(row: dict[str, Any]) -> dict[str, Any]:
    """A resource row as JSON-ready data."""
    return {
        "id": row["id"],
        "kind": row["kind"],
        "object_id": row["object_id"],
        "namespace": row["namespace"],
        "state": row["state"],
        "attempt": row["attempt"],
        "max_attempts": row["max_attempts"],
        "tags": list(row["tags"]),
        "metadata": row["metadata"],
        "object": row["object"],
        "errors": row["errors"],
        "created_at": _iso(row["created_at"]),
        "updated_at": _iso(row["updated_at"]),
        "scheduled_at": _iso(row["scheduled_at"]),
        "attempted_at": _iso(row["attempted_at"]),
        "attempted_by": row["attempted_by"],
        "synced_at": _iso(row["synced_at"]),
    }


def with_connect_timeout(conninfo: str) -> str:
    """``conninfo`` with ``connect_timeout`` set when it has none, so an
    unreachable server fails in seconds rather than minutes."""
    if conninfo_to_dict(conninfo).get("connect_timeout"):
        return conninfo
    return make_conninfo(conninfo, connect_timeout=CONNECT_TIMEOUT)


class Admin:
    """One connection to one schema; each statement commits on its own."""

    def __init__(self, conn: psycopg.Connection[Any], schema: str, database: str) -> None:
        self._conn = conn
        self.schema = schema
        self.database = database
        self._queries = _compose(schema)

    @classmethod
    @contextmanager
    def connect(cls, dsn: str, schema: str) -> Generator[Admin]:
        """Connect to ``dsn``; raises :class:`StoreError` with one redacted
        line when that fails."""
        check_schema(schema)
        conninfo = with_connect_timeout(normalize_dsn(dsn))
        database = describe_dsn(conninfo)
        try:
            conn = psycopg.connect(conninfo, autocommit=True)
        except (psycopg.Error, OSError) as exc:
            raise StoreError(f"cannot connect to {database}: {one_line(str(exc))}") from None
        try:
            with conn:
                yield cls(conn, schema, database)
        except psycopg.Error as exc:
            raise StoreError(f"{database}: {one_line(str(exc))}") from None

    def _rows(self, name: str, params: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        cur = self._conn.cursor(row_factory=dict_row)
        cur.execute(self._queries[name], params)
        return cur.fetchall() if cur.description else []

    # -- schema -------------------------------------------------------------------

    def schema_version(self) -> int | None:
        """The applied version, or None when the schema has no trio_delta tables."""
        try:
            rows = self._conn.execute(self._queries["schema_version"]).fetchall()
        except psycopg.errors.UndefinedTable:
            return None
        return int(rows[0][0])

    def missing_migrations(self) -> tuple[int, list[Migration]]:
        version = self.schema_version() or 0
        return version, [m for m in migrations() if m.version > version]

    def require_current(self) -> int:
        version = self.schema_version()
        fix = f"run `trio-delta migrate --schema {self.schema}`"
        if version is None or version == 0:
            raise NotMigratedError(
                f"schema {self.schema!r} on {self.database} has no trio_delta tables: {fix}")
        if version < LATEST_VERSION:
            raise NotMigratedError(
                f"schema {self.schema!r} is at version {version}, this trio-delta needs "
                f"{LATEST_VERSION}: {fix}")
        return version

    def now(self) -> datetime:
        (row,) = self._rows("database_now")
        return next(iter(row.values()))

    def known_kinds(self) -> list[str]:
        return [r["kind"] for r in self._rows("known_kinds")]

    # -- status -------------------------------------------------------------------

    def status(self, *, kind: str | None = None,
               namespace: str | None = None) -> dict[str, Any]:
        version = self.require_current()
        now = self.now()
        params = {"kind": kind, "namespace": namespace}
        groups: dict[tuple[str, str], dict[str, Any]] = {}
        totals = dict.fromkeys(STATES, 0)
        for row in self._rows("status_counts", params):
            key = (row["kind"], row["namespace"])
            group = groups.setdefault(key, {
                "kind": row["kind"], "namespace": row["namespace"], "total": 0,
                "states": dict.fromkeys(STATES, 0), "oldest_scheduled_at": None,
                "oldest_scheduled_age_seconds": None,
            })
            group["states"][row["state"]] = row["n"]
            group["total"] += row["n"]
            totals[row["state"]] = totals.get(row["state"], 0) + row["n"]
            if row["oldest_scheduled_at"] is not None:
                group["oldest_scheduled_at"] = _iso(row["oldest_scheduled_at"])
                group["oldest_scheduled_age_seconds"] = _age(now, row["oldest_scheduled_at"])
        controllers = [
            {
                "kind": c["kind"],
                "last_inform_at": _iso(c["last_run_at"]),
                "next_inform_at": _iso(c["next_inform_at"]),
                "last_error": c["last_error"],
                "informing_on": (c["lease_owner"] if c["lease_owner"] is not None
                                 and c["lease_expires_at"] is not None
                                 and c["lease_expires_at"] > now else None),
                "requested_at": _iso(c["requested_at"]),
                "cursor": _iso(c["cursor"]),
            }
            for c in self._rows("status_controllers", {"kind": kind})
        ]
        leaders = [
            {
                "name": r["name"],
                "id": r["leader_id"],
                "elected_at": _iso(r["elected_at"]),
                "expires_at": _iso(r["expires_at"]),
                "active": r["expires_at"] > now,
            }
            for r in self._rows("status_leader")
        ]
        leader = next((x for x in leaders if x["name"] == "default"), None)
        return {
            "schema": self.schema,
            "database": self.database,
            "schema_version": version,
            "now": _iso(now),
            "resources": list(groups.values()),
            "totals": {**totals, "total": sum(totals.values())},
            "controllers": controllers,
            "leader": leader if leader is not None and leader["active"] else None,
        }

    # -- resources ----------------------------------------------------------------

    def list_resources(self, selection: Selection) -> list[dict[str, Any]]:
        self.require_current()
        return [resource_dict(r) for r in self._rows("list_resources", selection.params())]

    def get_resource(self, kind: str, object_id: str) -> dict[str, Any] | None:
        rows = self.list_resources(Selection(kind=kind, object_ids=(object_id,), limit=1))
        return rows[0] if rows else None

    def states_of(self, kind: str, object_ids: Sequence[str]) -> dict[str, str]:
        rows = self._rows("states_of", {"kind": kind, "object_ids": list(object_ids)})
        return {r["object_id"]: r["state"] for r in rows}

    def _change(self, query: str, selection: Selection) -> list[dict[str, Any]]:
        self.require_current()
        params = selection.params()
        params["now"] = self.now()
        params["channel"] = notify_channel(self.schema)
        return self._rows(query, params)

    def retry(self, selection: Selection) -> list[dict[str, Any]]:
        """failed/degraded -> scheduled now with attempt 0; wakes running clients."""
        return self._change("retry", selection)

    def invalidate(self, selection: Selection) -> list[dict[str, Any]]:
        """synced -> expired (due now); wakes running clients."""
        return self._change("invalidate", selection)

    def delete(self, selection: Selection, *, hard: bool = False) -> list[dict[str, Any]]:
        """Soft delete (state ``deleted``, removed by the cleaner later), or
        remove the rows at once when ``hard``."""
        return self._change("hard_delete" if hard else "soft_delete", selection)
