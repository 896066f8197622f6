"""The trio-asyncio driver (the fallback) runs the same control loop as the
native one: inform, LISTEN wake-up, claim, work, outcome, transactions."""

from __future__ import annotations

import dataclasses

import pytest
import trio

import trio_delta as delta

from .models import RecordingController, User, controllers_for


@pytest.mark.parametrize("driver", ["native", "trio-asyncio"])
async def test_driver_runs_inform_work_and_transactions(
    pg_dsn: str, config: delta.Config, driver: str
) -> None:
    controller = RecordingController()
    cfg = dataclasses.replace(config, driver=driver)
    async with delta.open_delta_client(pg_dsn, controllers_for(controller), config=cfg) as c:
        await c.inform(User(f"{driver}@hello.com", "A", 1))
        async with c.transaction() as tx:
            (row,) = await tx.execute("select 41 + 1")
            assert row == (42,)
            await c.inform_tx(tx, User(f"tx-{driver}@hello.com", "B", 1))
        with trio.fail_after(10):
            while (
                len(rows := await c.list_resources(kind="user", state=delta.ResourceState.SYNCED))
                < 2
            ):
                await trio.sleep(0.02)
    assert sorted(r.object_id for r in rows) == sorted(
        [f"{driver}@hello.com", f"tx-{driver}@hello.com"]
    )
    assert len(controller.worked) == 2


def test_unknown_driver_is_a_config_error() -> None:
    with pytest.raises(delta.ConfigError, match="driver"):
        delta.Config(driver="sync")
