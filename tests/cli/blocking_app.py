"""Controllers for ``trio-delta run`` whose work blocks in a thread that
ignores cancellation (``trio.to_thread.run_sync`` without
``abandon_on_cancel``): the informer yields ``CLI_TEST_ITEMS`` (default 4)
items ``block-0``, ``block-1``..., each of whose work sleeps 60 s in a thread.
"""

from __future__ import annotations

import os
import time

import trio

import trio_delta as delta
from tests.cli.app import Item


class BlockingController(delta.Controller[Item]):
    async def inform(self, opts: delta.InformOptions, send: trio.MemorySendChannel[Item]) -> None:
        async with send:
            for i in range(int(os.environ.get("CLI_TEST_ITEMS", "4"))):
                await send.send(Item(f"block-{i}"))

    async def work(self, resource: delta.Resource[Item]) -> None:
        await trio.to_thread.run_sync(time.sleep, 60)


controllers = delta.Controllers()
delta.add_controller(controllers, BlockingController())
