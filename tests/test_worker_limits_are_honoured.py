"""Concurrency limits: a namespace's ``max_workers`` and a kind's
``ObjectSettings.parallelism`` cap concurrent ``work`` calls in a client,
and are reached under load."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any, ClassVar

import pytest
import trio

import trio_delta as delta

from .models import controllers_for, wait_until


class Gauge:
    """Concurrent work calls now and at their peak, per kind."""

    def __init__(self) -> None:
        self.now: Counter[str] = Counter()
        self.peak: Counter[str] = Counter()
        self.total_now = 0
        self.total_peak = 0
        self.done: Counter[str] = Counter()

    async def run(self, kind: str, seconds: float) -> None:
        self.now[kind] += 1
        self.total_now += 1
        self.peak[kind] = max(self.peak[kind], self.now[kind])
        self.total_peak = max(self.total_peak, self.total_now)
        try:
            await trio.sleep(seconds)
        finally:
            self.now[kind] -= 1
            self.total_now -= 1
            self.done[kind] += 1


@dataclass
class Plain:
    kind: ClassVar[str] = "plain"
    key: str

    def id(self) -> str:
        return self.key


@dataclass
class Serial:
    kind: ClassVar[str] = "serial"
    key: str

    def id(self) -> str:
        return self.key

    @classmethod
    def settings(cls) -> delta.ObjectSettings:
        return delta.ObjectSettings(parallelism=1)


@dataclass
class Pair:
    kind: ClassVar[str] = "pair"
    key: str

    def id(self) -> str:
        return self.key

    @classmethod
    def settings(cls) -> delta.ObjectSettings:
        return delta.ObjectSettings(parallelism=2)


class _Gauged:
    def __init__(self, gauge: Gauge, seconds: float) -> None:
        self.gauge = gauge
        self.seconds = seconds

    async def work(self, resource: delta.Resource[Any]) -> None:
        await self.gauge.run(resource.kind, self.seconds)


class PlainController(_Gauged, delta.Controller[Plain]):
    pass


class SerialController(_Gauged, delta.Controller[Serial]):
    pass


class PairController(_Gauged, delta.Controller[Pair]):
    pass


CONTROLLER_FOR: dict[type[Any], type[_Gauged]] = {
    Plain: PlainController,
    Serial: SerialController,
    Pair: PairController,
}


def gauged(object_type: type[Any], gauge: Gauge, seconds: float) -> Any:
    return CONTROLLER_FOR[object_type](gauge, seconds)


async def inform_all(client: delta.Client, objects: list[Any]) -> None:
    """Inform in one transaction, so all the load arrives at once."""
    async with client.transaction() as tx:
        for obj in objects:
            await client.inform_tx(tx, obj)


async def test_namespace_max_workers_caps_and_is_reached(pg_dsn: str, config: delta.Config) -> None:
    gauge = Gauge()
    async with delta.open_delta_client(
        pg_dsn,
        controllers_for(gauged(Plain, gauge, 0.15)),
        namespaces={"default": delta.NamespaceConfig(max_workers=3)},
        config=config,
    ) as c:
        await inform_all(c, [Plain(f"p{i}") for i in range(12)])

        async def all_done() -> bool:
            return gauge.done["plain"] == 12

        await wait_until(all_done, within=15)
    assert gauge.total_peak == 3


@pytest.mark.parametrize(("object_type", "parallelism"), [(Serial, 1), (Pair, 2)])
async def test_kind_parallelism_caps_and_is_reached(
    pg_dsn: str, config: delta.Config, object_type: type[Any], parallelism: int
) -> None:
    gauge = Gauge()
    async with delta.open_delta_client(
        pg_dsn,
        controllers_for(gauged(object_type, gauge, 0.1), gauged(Plain, gauge, 0.1)),
        namespaces={"default": delta.NamespaceConfig(max_workers=10)},
        config=config,
    ) as c:
        capped = object_type.kind
        await inform_all(
            c, [object_type(f"s{i}") for i in range(6)] + [Plain(f"p{i}") for i in range(6)]
        )

        async def all_done() -> bool:
            return gauge.done[capped] == 6 and gauge.done["plain"] == 6

        await wait_until(all_done, within=15)
    assert gauge.peak[capped] == parallelism
    # the cap is the kind's alone: the uncapped kind still runs in parallel
    assert gauge.peak["plain"] > 1
    assert gauge.total_peak <= 10
