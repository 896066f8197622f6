"""A client rides out a primary failover to a synchronous standby, losing nothing.

Two Postgres clusters of the test's own (never the machine's shared one): a
primary and a streaming standby made with ``pg_basebackup -R``
(tests/reliability/standby.py), synchronous (``synchronous_standby_names =
'*'`` on the primary, ``synchronous_commit`` on, the default): the
configuration a user needs so that an inform, once acknowledged, survives
the loss of the primary. The client is given both through libpq's
multi-host connection string with ``target_session_attrs=read-write``, so
it follows whichever accepts writes.

2,000 resources are informed (``inform_many`` returned: committed), and
while they drain the primary is stopped (``pg_ctl stop -m fast``) and the
standby promoted. Then every one of them must end ``synced`` on the new
primary, the client must keep running (no ``ClientFailedError``) and lead
again there, and stop cleanly. Duplicate work is allowed only for what was
in flight at the failover: a resource runs twice only if the new primary
inherits it ``pending`` (its claim replicated, its outcome not), so the
duplicates are bounded by the rows ``pending`` on the standby when it is
promoted (counted then, after it replayed all the WAL it received; with a
fast stop the primary sends the standby all its WAL, the asynchronously
committed claims and outcomes included, before it exits).

Measured and printed (``pytest -s``), no figure claimed here: seconds from
the promotion to the first outcome landing on the new primary (and to the
first work call completing after it), duplicate works, the pending rows
inherited, seconds to leadership on the new primary, and the total time.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from dataclasses import dataclass
from typing import ClassVar

import psycopg
import pytest
import trio

import trio_delta as delta
from tests.reliability.pgcontrol import OwnServer, start_own_server
from tests.reliability.standby import (
    Standby,
    make_standby,
    make_synchronous,
    multi_host_dsn,
)

N = 2000
#: Share of the resources synced when the primary is stopped.
FAILOVER_AT = 0.3
WORK_SECONDS = 0.015
#: Few workers, so that the drain lasts a few seconds and the failover lands in it.
MAX_WORKERS = 10
#: Bound on the drain after the promotion (the rescuer alone would need
#: work_timeout + rescue_after = 7 s for a row whose outcome was lost).
DRAIN_WITHIN = 90.0
SCHEMA = "failover"


@dataclass
class Job:
    kind: ClassVar[str] = "job"
    key: str

    def id(self) -> str:
        return self.key


class RecordingController(delta.Controller[Job]):
    """Records every work start (id, attempt) and every completion time."""

    def __init__(self) -> None:
        self.starts: list[tuple[str, int]] = []
        self.completed: list[tuple[float, str]] = []

    async def work(self, resource: delta.Resource[Job]) -> None:
        self.starts.append((resource.object.key, resource.attempt))
        await trio.sleep(WORK_SECONDS)
        self.completed.append((time.monotonic(), resource.object.key))


def controllers_of(controller: delta.Controller[Job]) -> delta.Controllers:
    controllers = delta.Controllers()
    delta.add_controller(controllers, controller)
    return controllers


def sql(dsn: str, query: str, params: object = None) -> list[tuple[object, ...]]:
    with psycopg.connect(dsn, autocommit=True, connect_timeout=2) as conn:
        cur = conn.execute(query, params)  # type: ignore[arg-type]
        return cur.fetchall() if cur.description else []


def states(dsn: str) -> Counter[str]:
    rows = sql(dsn, f"select state, count(*) from {SCHEMA}.resources group by state")
    return Counter({str(state): int(count) for state, count in rows})  # type: ignore[call-overload]


def poll_count(dsn: str, query: str, until: int, within: float) -> float:
    """Run ``query`` (a count) on one connection until it reaches ``until``;
    the monotonic time it first did. Raises after ``within`` seconds."""
    deadline = time.monotonic() + within
    with psycopg.connect(dsn, autocommit=True, connect_timeout=2) as conn:
        while True:
            row = conn.execute(query).fetchone()  # type: ignore[arg-type]
            count = int(row[0]) if row is not None else 0  # pyright: ignore[reportUnknownArgumentType]
            if count >= until:
                return time.monotonic()
            if time.monotonic() > deadline:
                raise AssertionError(f"{query!r} reached {count}, not {until}, within {within}s")
            time.sleep(0.01)


async def test_a_primary_failover_loses_nothing(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="trio_delta")
    began = time.monotonic()
    primary: OwnServer = await trio.to_thread.run_sync(start_own_server)
    standby: Standby | None = None
    try:
        standby = await trio.to_thread.run_sync(make_standby, primary)
        await trio.to_thread.run_sync(make_synchronous, primary)
        dsn = multi_host_dsn(primary, standby, connect_timeout=2)
        await delta.migrate(dsn, schema=SCHEMA)
        await _fail_over_under_load(primary, standby, dsn, caplog)
    finally:
        try:
            if standby is not None:
                standby.cleanup()
        finally:
            primary.cleanup()
    print(f"test wall time {time.monotonic() - began:.1f}s")


async def _fail_over_under_load(
    primary: OwnServer, standby: Standby, dsn: str, caplog: pytest.LogCaptureFixture
) -> None:
    controller = RecordingController()
    config = delta.Config(
        schema=SCHEMA,
        poll_interval=0.2,
        leader_ttl=2.0,
        maintenance_interval=0.5,
        rescue_after=2.0,
        work_timeout=5.0,
        retry_policy=lambda attempt: 0.2,
        shutdown_grace=2.0,
    )
    namespaces = {"default": delta.NamespaceConfig(max_workers=MAX_WORKERS)}
    keys = [f"r{i:04d}" for i in range(N)]
    async with delta.open_delta_client(
        dsn, controllers_of(controller), namespaces=namespaces, config=config
    ) as client:
        engine = client._engine  # its services, to check that none of them ended
        with trio.fail_after(10):
            while not client.is_leader:
                await trio.sleep(0.05)

        informed_at = time.monotonic()
        results = await client.inform_many(Job(key) for key in keys)
        assert len(results) == N

        # -- the drain is under way: the primary goes ----------------------
        synced_query = f"select count(*) from {SCHEMA}.resources where state = 'synced'"
        await trio.to_thread.run_sync(
            poll_count, primary.dsn, synced_query, int(N * FAILOVER_AT), 30.0
        )
        before_stop = await trio.to_thread.run_sync(states, primary.dsn)
        stopping_at = time.monotonic()
        await trio.to_thread.run_sync(primary.stop)  # fast: sessions cut, WAL sent
        stopped_at = time.monotonic()

        # What the new primary inherits: everything the old one committed
        # (every inform: it waited for the standby), as the standby replayed it.
        await trio.to_thread.run_sync(standby.wait_replay_settled)
        inherited = await trio.to_thread.run_sync(states, standby.dsn)
        assert sum(inherited.values()) == N, f"informs lost in the failover: {inherited}"
        assert inherited["synced"] < N, "the drain was over before the failover"
        ((lease_before,),) = await trio.to_thread.run_sync(
            sql, standby.dsn, f"select expires_at from {SCHEMA}.leader"
        )

        await trio.to_thread.run_sync(standby.promote)
        promoted_at = time.monotonic()

        # -- the client finds the new primary ------------------------------
        first_outcome_at = await trio.to_thread.run_sync(
            poll_count, standby.dsn, synced_query, inherited["synced"] + 1, 30.0
        )
        lead_again_at = await _leads_on(client, standby, lease_before, within=15.0)
        all_synced_at = await trio.to_thread.run_sync(
            poll_count, standby.dsn, synced_query, N, DRAIN_WITHIN
        )
        # New informs commit on the new primary (which waits for no standby).
        await client.inform(Job("after-failover"))
        await trio.to_thread.run_sync(
            poll_count,
            standby.dsn,
            f"select count(*) from {SCHEMA}.resources"
            " where object_id = 'after-failover' and state = 'synced'",
            1,
            10.0,
        )
        running = {name for name, h in engine._handles.items() if not h.done.is_set()}
        assert running == set(engine._handles), "a service ended across the failover"
        stop_began = time.monotonic()
    stop_took = time.monotonic() - stop_began  # the block left without an error

    # -- nothing lost, duplicates only for what was in flight --------------
    rows = await trio.to_thread.run_sync(
        sql, standby.dsn, f"select object_id, state from {SCHEMA}.resources where kind = 'job'"
    )
    final = {str(key): str(state) for key, state in rows}
    assert set(final) == {*keys, "after-failover"}, "resources missing on the new primary"
    assert Counter(final.values()) == Counter({"synced": N + 1}), Counter(final.values())
    worked = Counter(key for key, _ in controller.starts)
    assert set(worked) == {*keys, "after-failover"}
    duplicates = sum(count - 1 for count in worked.values())
    # A resource runs again only if the new primary had it pending: its
    # claim had replicated and its outcome had not.
    assert duplicates <= inherited["pending"], (duplicates, inherited)
    first_work_after = min(t for t, _ in controller.completed if t > promoted_at)

    warnings = [
        f"{r.name}: {r.getMessage()}" for r in caplog.records if r.levelno >= logging.WARNING
    ]
    print(
        f"\nfailover at {before_stop['synced']}/{N} synced "
        f"({before_stop['pending']} pending on the primary just before the stop); "
        f"stop took {stopped_at - stopping_at:.2f}s, stop -> promoted "
        f"{promoted_at - stopped_at:.2f}s; the new primary inherited "
        f"{inherited['synced']} synced, {inherited['pending']} pending\n"
        f"promotion -> first outcome on the new primary {first_outcome_at - promoted_at:.3f}s, "
        f"-> first work completed {first_work_after - promoted_at:.3f}s, "
        f"-> leading there {lead_again_at - promoted_at:.2f}s, "
        f"-> all {N} synced {all_synced_at - promoted_at:.2f}s\n"
        f"duplicates {duplicates} (bound: {inherited['pending']} inherited pending); "
        f"inform -> all synced {all_synced_at - informed_at:.2f}s; "
        f"client stop {stop_took:.2f}s; {len(warnings)} warnings:"
    )
    for line in warnings:
        print(f"  {' '.join(line.split())[:200]}")


async def _leads_on(
    client: delta.Client, standby: Standby, lease_before: object, within: float
) -> float:
    """Wait until the client leads on the new primary: it says so, and the
    leader row there is its own, renewed since the promotion, live."""
    query = (
        f"select count(*) from {SCHEMA}.leader"
        " where leader_id = %s and expires_at > %s and expires_at > now()"
    )

    with trio.fail_after(within):
        while True:
            rows = await trio.to_thread.run_sync(sql, standby.dsn, query, (client.id, lease_before))
            if client.is_leader and rows[0][0]:
                return time.monotonic()
            await trio.sleep(0.02)
