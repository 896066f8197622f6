"""The rescuer counts a pending row as lost only after the longest time its
work may legitimately take: the longest work timeout of any kind, plus, with
``prefetch``, the works it may queue behind, plus ``rescue_after``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import trio_delta as delta
from trio_delta._engine.maintenance.rescuer import RescuerConfig


@dataclass
class Slow:
    kind: ClassVar[str] = "slow"
    key: str

    def id(self) -> str:
        return self.key

    @classmethod
    def settings(cls) -> delta.ObjectSettings:
        return delta.ObjectSettings(work_timeout=600)


class SlowController(delta.Controller[Slow]):
    async def work(self, resource: delta.Resource[Slow]) -> None:
        pass


def controllers() -> delta.Controllers:
    out = delta.Controllers()
    delta.add_controller(out, SlowController())
    return out


def test_the_longest_kind_timeout_counts() -> None:
    config = delta.Config(work_timeout=60, rescue_after=30)
    plain = {"default": delta.NamespaceConfig()}
    assert RescuerConfig.of(config, plain, delta.Controllers()).stuck_after == 90
    assert RescuerConfig.of(config, plain, controllers()).stuck_after == 630


def test_rows_claimed_ahead_may_wait_behind_whole_works() -> None:
    config = delta.Config(work_timeout=60, rescue_after=30)
    ahead = {"default": delta.NamespaceConfig(max_workers=50, prefetch=60)}
    # 60 rows ahead of 50 workers: each waits behind at most two works.
    assert RescuerConfig.of(config, ahead, delta.Controllers()).stuck_after == 60 * 3 + 30
