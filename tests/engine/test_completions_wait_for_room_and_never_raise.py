"""A worker hands its completion to the outcome writer without waiting when
there is room, waits (shielded) when the writer's channel is full, and
only logs when the writer is gone: no completion is lost while the writer
lives, and no worker fails because it died."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

import pytest
import trio
import trio.testing

import trio_delta as delta
from trio_delta._engine.clock import Clock
from trio_delta._engine.context import EngineContext
from trio_delta._engine.results import Completion
from trio_delta._engine.slots import Slots
from trio_delta._engine.workers import WorkerPool
from trio_delta._store.memory import MemoryStore
from trio_delta._types import Resource, ResourceState, build_row

from ..models import NoteController, controllers_for

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def note_row(i: int) -> Resource[Any]:
    return build_row(
        i, "note", f"n{i}", "default", ResourceState.PENDING, 1, 3,
        b'{"key": "n%d", "text": ""}' % i, b"h", {}, (), (),
        T0, T0, T0, T0, "me", None, 0, 0,
    )  # fmt: skip


def make_pool(completions: trio.MemorySendChannel[Completion], notes: NoteController) -> WorkerPool:
    controllers = controllers_for(notes)
    ctx = EngineContext(MemoryStore(), Clock(T0), "me", delta.Config(), controllers)
    slots = Slots({"default": 10}, controllers)
    for _ in range(3):
        slots.take("default", "note")  # as the fetcher does for each claimed row
    return WorkerPool(
        ctx,
        "default",
        10,
        slots=slots,
        completions=completions,
        on_slot_free=lambda: None,
        on_fatal=lambda exc: None,
    )


async def test_a_full_channel_makes_workers_wait_and_loses_nothing(
    autojump_clock: trio.testing.MockClock,
) -> None:
    send, receive = trio.open_memory_channel[Completion](1)
    notes = NoteController()
    pool = make_pool(send, notes)
    async with trio.open_nursery() as nursery:
        await nursery.start(pool.run)
        pool.rows.send_all([note_row(i) for i in range(3)])
        await trio.sleep(1)
        # Every work ran; one completion fits, two workers wait for room.
        assert sorted(notes.worked) == ["n0", "n1", "n2"]
        assert receive.statistics().current_buffer_used == 1
        assert send.statistics().tasks_waiting_send == 2
        got = [await receive.receive() for _ in range(3)]
        pool.rows.close()
    assert sorted(c.resource.object_id for c in got) == ["n0", "n1", "n2"]
    assert all(c.result is not None and c.result.value is None for c in got)  # pyright: ignore[reportAttributeAccessIssue]


async def test_a_gone_writer_is_logged_not_raised(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    send, receive = trio.open_memory_channel[Completion](1)
    notes = NoteController()
    pool = make_pool(send, notes)
    with caplog.at_level(logging.ERROR, logger="trio_delta.worker"):
        async with trio.open_nursery() as nursery:
            await nursery.start(pool.run)
            pool.rows.send_all([note_row(i) for i in range(3)])
            await trio.sleep(1)
            await receive.aclose()  # the writer is gone: the two waiting, and any later
            await trio.sleep(1)
            pool.rows.close()
    assert sorted(notes.worked) == ["n0", "n1", "n2"]
    gone = [r for r in caplog.records if "the outcome writer is gone" in r.getMessage()]
    assert len(gone) == 2
