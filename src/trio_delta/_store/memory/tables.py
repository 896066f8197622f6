"""The memory store's tables and the rules every part of it shares.

What Postgres gives the other adapter for free lives here: row ids from one
counter that, like an identity column, every proposed row consumes and no
rollback returns; row locks held by a user transaction until it ends (claims
skip those rows, other writers wait for them); notifications sent on commit.
Rows handed out are snapshots: later changes never show through them.
"""

from __future__ import annotations

import math
from collections.abc import AsyncGenerator, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

import msgspec
import trio

from ..._errors import ConfigError
from ..._types import AttemptError, ResourceRow, build_row
from ..params import MAX_ERRORS, ControllerState, LeaderState, Pause, lock_timeout_error

Key = tuple[str, str]


@dataclass(frozen=True, slots=True)
class StoredRow:
    """A stored row, with its metadata kept as JSON so that every snapshot
    gets a fresh (unshared) mapping."""

    row: ResourceRow[Any]
    metadata: bytes

    @property
    def key(self) -> Key:
        return (self.row.kind, self.row.object_id)

    def snapshot(self) -> ResourceRow[Any]:
        r = self.row
        return build_row(
            r.id,
            r.kind,
            r.object_id,
            r.namespace,
            r.state,
            r.attempt,
            r.max_attempts,
            r.encoded_object,
            r.hash,
            msgspec.json.decode(self.metadata),
            r.tags,
            r.errors,
            r.created_at,
            r.updated_at,
            r.scheduled_at,
            r.attempted_at,
            r.attempted_by,
            r.synced_at,
            r.priority,
            r.snoozes,
        )

    def update(self, **changes: Any) -> StoredRow:
        return StoredRow(replace(self.row, **changes), self.metadata)


@dataclass(frozen=True, slots=True)
class ControllerRow:
    state: ControllerState
    options: bytes | None  # JSON, like the jsonb column: every claim decodes a fresh copy


def with_error(errors: Sequence[AttemptError], error: AttemptError) -> tuple[AttemptError, ...]:
    """``errors`` plus ``error``; at the cap, the oldest one goes (only one)."""
    return (*errors[1:], error) if len(errors) >= MAX_ERRORS else (*errors, error)


class MemoryTransaction:
    """A transaction on the memory store: upserts made with it are staged
    and become visible on commit; it cannot run SQL."""

    def __init__(self, tables: Tables) -> None:
        self.tables = tables
        self.staged: dict[Key, StoredRow] = {}
        self.namespaces: set[str] = set()
        self.closed = False

    async def execute(
        self, query: str, params: Sequence[Any] | Mapping[str, Any] | None = None
    ) -> list[tuple[Any, ...]]:
        await trio.lowlevel.checkpoint()
        raise ConfigError(
            "the memory store cannot run SQL: tx.execute() needs a Postgres store "
            "(test SQL against a real database, or keep it out of the memory-store test)"
        )


class MemoryListener:
    def __init__(self, receive: trio.MemoryReceiveChannel[str]) -> None:
        self._receive = receive

    async def wait(self) -> str:
        return await self._receive.receive()


class Tables:
    """The resources, controllers and leader tables of one memory store."""

    def __init__(self, *, lock_timeout: float | None = None) -> None:
        self.lock_timeout = lock_timeout
        """How long an upsert waits for rows a transaction holds (None: no bound)."""
        self.rows: dict[int, StoredRow] = {}
        self.ids: dict[Key, int] = {}
        self._last_id = 0
        self.locks: dict[Key, MemoryTransaction] = {}
        self._released = trio.Event()
        self._listeners: set[trio.MemorySendChannel[str]] = set()
        self.controllers: dict[str, ControllerRow] = {}
        self.leaders: dict[str, LeaderState] = {}
        self.pauses: dict[tuple[str | None, str | None], Pause] = {}
        self.buckets: dict[str, tuple[float, datetime]] = {}

    def read_bucket(self, kind: str, rate: float, burst: int, now: datetime) -> float:
        """The ``read_bucket`` query: ``kind``'s tokens now (a new bucket is full)."""
        if kind not in self.buckets:
            self.buckets[kind] = (float(burst), now)
            return float(burst)
        tokens, at = self.buckets[kind]
        return min(float(burst), tokens + max(0.0, (now - at).total_seconds()) * rate)

    def write_bucket(self, kind: str, tokens: float, now: datetime) -> None:
        self.buckets[kind] = (tokens, max(self.buckets[kind][1], now))

    def next_id(self) -> int:
        self._last_id += 1
        return self._last_id

    def view(self, key: Key, tx: MemoryTransaction | None) -> StoredRow | None:
        """The row as ``tx`` (or, with None, everyone) sees it."""
        if tx is not None and key in tx.staged:
            return tx.staged[key]
        row_id = self.ids.get(key)
        return None if row_id is None else self.rows[row_id]

    def install(self, row: StoredRow) -> None:
        self.rows[row.row.id] = row
        self.ids[row.key] = row.row.id

    def remove(self, row: StoredRow) -> None:
        del self.rows[row.row.id]
        del self.ids[row.key]

    def _blocked(self, keys: Iterable[Key], tx: MemoryTransaction | None) -> bool:
        return any(self.locks.get(key, tx) is not tx for key in keys)

    async def wait_unlocked(
        self, keys: Sequence[Key], tx: MemoryTransaction | None, lock_timeout: float | None = None
    ) -> None:
        """Wait while another transaction holds any of ``keys`` (Postgres would
        block on the row lock until that transaction ends), at most
        ``lock_timeout`` seconds: then :class:`LockTimeoutError`, as from
        Postgres' ``lock_timeout``."""
        with trio.move_on_after(math.inf if lock_timeout is None else lock_timeout):
            while self._blocked(keys, tx):
                await self._released.wait()
            return
        held = [key for key in keys if self.locks.get(key, tx) is not tx]
        raise lock_timeout_error("inform", held, lock_timeout)

    def notify(self, payloads: Iterable[str]) -> None:
        for payload in sorted(set(payloads)):
            for send in self._listeners:
                send.send_nowait(payload)

    def end(self, tx: MemoryTransaction, *, commit: bool) -> None:
        tx.closed = True
        if commit:
            for row in tx.staged.values():
                self.install(row)
            self.notify(tx.namespaces)
        for key in [key for key, owner in self.locks.items() if owner is tx]:
            del self.locks[key]
        tx.staged.clear()
        self._released.set()
        self._released = trio.Event()

    @asynccontextmanager
    async def listen(self) -> AsyncGenerator[MemoryListener, None]:
        await trio.lowlevel.checkpoint()
        send, receive = trio.open_memory_channel[str](math.inf)
        self._listeners.add(send)
        try:
            yield MemoryListener(receive)
        finally:
            self._listeners.discard(send)
            send.close()
            receive.close()
