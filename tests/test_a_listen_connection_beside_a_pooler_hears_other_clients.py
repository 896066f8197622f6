"""Statements through a transaction-mode pooler, LISTEN on the server itself
(``Config.listen_dsn``): work informed by another client through the pooler
is picked up at once, by notification, not at the next poll."""

from __future__ import annotations

import dataclasses
import logging
import time

import pytest
import trio

import trio_delta as delta

from .models import RecordingController, User, controllers_for
from .pgbouncer import PgBouncer

#: Far longer than the test may take: only a notification can wake the worker.
POLL = 60.0


async def test_work_informed_through_the_pooler_is_heard_directly(
    pg_dsn: str, pgbouncer: PgBouncer, config: delta.Config
) -> None:
    pooled = dataclasses.replace(
        config, prepared_statements=False, poll_interval=POLL, listen_dsn=pg_dsn
    )
    controller = RecordingController()
    async with delta.open_delta_client(pgbouncer.dsn, controllers_for(controller), config=pooled):
        informer_config = dataclasses.replace(pooled, listen=False, listen_dsn=None)
        async with delta.open_delta_client(
            pgbouncer.dsn, delta.Controllers(), config=informer_config
        ) as other:
            # The worker's first poll at start-up is over once it found nothing.
            await trio.sleep(0.3)
            for i in range(5):
                sent = time.monotonic()
                await other.inform(User(f"n{i}@x", "n", 1))
                with trio.fail_after(5):
                    while len(controller.worked) <= i:
                        await trio.sleep(0.01)
                assert time.monotonic() - sent < 5 < POLL
    assert [w for w, _ in controller.worked] == [f"n{i}@x" for i in range(5)]


async def test_listening_through_what_may_be_a_pooler_is_warned_about(
    pg_dsn: str, config: delta.Config, caplog: pytest.LogCaptureFixture
) -> None:
    """prepared_statements=False says "a transaction-mode pooler", where a
    LISTEN through the same DSN hears nothing: the client says so."""
    caplog.set_level(logging.WARNING, logger="trio_delta")
    quiet = dataclasses.replace(config, prepared_statements=False)
    async with delta.open_delta_client(pg_dsn, delta.Controllers(), config=quiet):
        pass
    assert any("listen_dsn" in r.getMessage() for r in caplog.records), caplog.records
    caplog.clear()
    for fine in (
        dataclasses.replace(quiet, listen=False),
        dataclasses.replace(quiet, listen_dsn=pg_dsn),
        config,
    ):
        async with delta.open_delta_client(pg_dsn, delta.Controllers(), config=fine):
            pass
    assert not [r for r in caplog.records if "listen_dsn" in r.getMessage()]
