"""Two clients on one schema share the queue: every resource is worked
exactly once in total, and both clients do some of the work."""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass
from typing import ClassVar

import trio

import trio_delta as delta

from .conftest import sql
from .models import controllers_for, wait_until

N = 1000


@dataclass
class Job:
    kind: ClassVar[str] = "job"
    key: str

    def id(self) -> str:
        return self.key


class SharedLog(delta.Controller[Job]):
    def __init__(self, name: str, log: list[tuple[str, str, str | None]]) -> None:
        self.name = name
        self.log = log

    async def work(self, resource: delta.Resource[Job]) -> None:
        self.log.append((resource.object_id, self.name, resource.attempted_by))
        await trio.sleep(0.002)


async def test_two_clients_work_each_of_1000_resources_exactly_once(
    pg_dsn: str, schema: str, config: delta.Config
) -> None:
    log: list[tuple[str, str, str | None]] = []
    namespaces = {"default": delta.NamespaceConfig(max_workers=10)}
    started = time.monotonic()
    async with (
        delta.open_delta_client(
            pg_dsn, controllers_for(SharedLog("a", log)), namespaces=namespaces, config=config
        ) as a,
        delta.open_delta_client(
            pg_dsn, controllers_for(SharedLog("b", log)), namespaces=namespaces, config=config
        ) as b,
    ):
        # all at once, so neither client gets a head start
        async with a.transaction() as tx:
            for i in range(N):
                await a.inform_tx(tx, Job(f"job-{i:04d}"))

        async def all_synced() -> bool:
            ((count,),) = sql(
                pg_dsn, f"select count(*) from {schema}.resources where state = 'synced'"
            )
            return count == N

        await wait_until(all_synced, within=40, every=0.1)
        await trio.sleep(0.3)  # room for any duplicate work to show up
    elapsed = time.monotonic() - started

    per_object = Counter(object_id for object_id, _, _ in log)
    assert len(per_object) == N
    assert set(per_object.values()) == {1}, per_object.most_common(3)
    per_client = Counter(name for _, name, _ in log)
    assert per_client["a"] > 0
    assert per_client["b"] > 0
    ids = {"a": a.id, "b": b.id}
    assert all(attempted_by == ids[name] for _, name, attempted_by in log)

    rows = sql(
        pg_dsn,
        f"select attempted_by, count(*), max(attempt) from {schema}.resources "
        "group by attempted_by",
    )
    assert {r[0]: r[1] for r in rows} == {a.id: per_client["a"], b.id: per_client["b"]}
    assert {r[2] for r in rows} == {1}
    assert elapsed < 40
