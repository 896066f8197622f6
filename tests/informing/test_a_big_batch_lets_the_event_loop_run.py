"""A bulk inform prepares its objects a step at a time and lets the event
loop run between steps: the client's own tasks (workers, claims, the
leader's lease), or an asyncio web service's other requests, are not held
up for as long as a big batch takes to check and encode.

Each batch ends with an invalid object, so the call fails before any
statement: the other task's turns counted are the preparation's alone."""

from __future__ import annotations

import asyncio

import psycopg
import pytest
import trio

import trio_delta as delta
from trio_delta import producer
from trio_delta._informing import PREPARE_STEP
from trio_delta.testing import open_test_client

from ..models import Note, NoteController, controllers_for

STEPS = 4
#: Turns the other task surely gets: one per step but the last, less one
#: (Trio may run the ticker after the inform in the final pass).
TURNS = STEPS - 2


def batch() -> list[Note]:
    notes = [Note(f"n{i}") for i in range(PREPARE_STEP * STEPS)]
    notes[-1] = Note("")  # an invalid id, in the last step
    return notes


async def test_the_client_lets_other_tasks_run_between_steps() -> None:
    async with open_test_client(controllers_for(NoteController())) as t:
        ticks: list[int] = [0]
        done = trio.Event()

        async def tick() -> None:
            while not done.is_set():
                ticks[0] += 1
                await trio.lowlevel.cancel_shielded_checkpoint()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(tick)
            await trio.lowlevel.cancel_shielded_checkpoint()  # the ticker is running
            before = ticks[0]
            with pytest.raises(delta.ObjectError) as refused:
                await t.client.inform_many(batch())
            during = ticks[0] - before
            done.set()
        assert refused.value.index == PREPARE_STEP * STEPS - 1
        assert await t.client.list_resources() == []
    assert during >= TURNS


async def test_the_asyncio_producer_lets_other_tasks_run_between_steps(
    pg_dsn: str, schema: str
) -> None:
    async def main() -> tuple[int | None, int]:
        ticks = 0
        done = False

        async def tick() -> None:
            nonlocal ticks
            while not done:
                ticks += 1
                await asyncio.sleep(0)

        ticker = asyncio.create_task(tick())
        await asyncio.sleep(0)
        async with await psycopg.AsyncConnection.connect(pg_dsn, autocommit=True) as conn:
            before = ticks
            try:
                await producer.inform_many_async(conn, batch(), schema=schema)
            except delta.ObjectError as exc:
                index = exc.index
            else:
                index = None
            during = ticks - before
        done = True
        await ticker
        return index, during

    # The schema fixture runs on Trio; the application, in a thread, on asyncio.
    index, during = await trio.to_thread.run_sync(lambda: asyncio.run(main()))
    assert index == PREPARE_STEP * STEPS - 1
    assert during >= TURNS
