"""A failure that repeats is logged at a bounded rate, with how many
repeats were held back, not once per retry."""

from __future__ import annotations

import logging

import pytest
import trio
import trio.testing

from trio_delta._logs import Throttled


async def test_repeats_are_held_back_and_counted(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    logger = logging.getLogger("trio_delta.test-throttle")
    storm = Throttled(logger, interval=10)
    with caplog.at_level(logging.WARNING, logger=logger.name):
        for i in range(240):  # one retry every 0.125 s for 30 s
            storm.warning("claiming failed, retrying in %.2fs: %s", 0.125, f"error {i}")
            storm.warning("another failure: %s", i)
            await trio.sleep(0.125)
    messages = [r.getMessage() for r in caplog.records]
    claims = [m for m in messages if m.startswith("claiming failed")]
    assert claims == [
        "claiming failed, retrying in 0.12s: error 0",
        "claiming failed, retrying in 0.12s: error 80 (and 79 more like it in the last 10s)",
        "claiming failed, retrying in 0.12s: error 160 (and 79 more like it in the last 10s)",
    ]
    # each kind of warning has its own budget
    assert len([m for m in messages if m.startswith("another failure")]) == 3
