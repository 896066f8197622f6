"""A running client survives the database going away for seconds.

The session's own Postgres (never the shared one) is stopped with
``pg_ctl stop -m fast`` (every session is disconnected, as in a restart or a
failover) for ``OUTAGE`` seconds, then started again on the same socket. The
client must keep running (no service dies, no ``ClientFailedError``), say
clearly in its log what is failing, refuse informs while the database is away
(``StoreError``: never a success for a write that did not commit), keep the
outcome of work that finished during the outage and write it once the
database is back, and then go on working: its lanes, its pool and its LISTEN
connection all reconnect by themselves.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import ClassVar

import pytest
import trio

import trio_delta as delta
from tests.reliability.conftest import OwnServer, own_sql

OUTAGE = 5.0
#: The LISTEN connection reconnects with exponential backoff capped at 10 s.
LISTEN_BACK_WITHIN = 12.0


@dataclass
class Job:
    kind: ClassVar[str] = "job"
    key: str

    def id(self) -> str:
        return self.key


class GatedController(delta.Controller[Job]):
    """Records every work call; work on ``gated`` waits for ``gate``."""

    def __init__(self) -> None:
        self.gate = trio.Event()
        self.gated_started = trio.Event()
        self.worked: list[tuple[str, int]] = []

    async def work(self, resource: delta.Resource[Job]) -> None:
        if resource.object.key == "gated":
            self.gated_started.set()
            await self.gate.wait()
        self.worked.append((resource.object.key, resource.attempt))


def controllers_of(controller: delta.Controller[Job]) -> delta.Controllers:
    controllers = delta.Controllers()
    delta.add_controller(controllers, controller)
    return controllers


async def wait_for(predicate: object, within: float, what: str) -> float:
    """Poll the async ``predicate`` until true; the seconds it took."""
    start = time.monotonic()
    with trio.move_on_after(within):
        while not await predicate():  # type: ignore[operator]
            await trio.sleep(0.05)
        return time.monotonic() - start
    raise AssertionError(f"{what}: not within {within}s")


async def state_of(client: delta.Client, key: str) -> str | None:
    try:
        row = await client.get_resource("job", key)
    except delta.StoreError:
        return None
    return None if row is None else row.state.value


def messages(caplog: pytest.LogCaptureFixture, level: int = logging.WARNING) -> list[str]:
    return [f"{r.name}: {r.getMessage()}" for r in caplog.records if r.levelno >= level]


async def test_client_rides_out_a_database_outage(
    own_pg: OwnServer, own_schema: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="trio_delta")
    controller = GatedController()
    config = delta.Config(
        schema=own_schema,
        # Polling this rarely, only NOTIFY (through the LISTEN connection)
        # can bring the other client's inform to us quickly.
        poll_interval=30.0,
        leader_ttl=2.0,
        maintenance_interval=0.5,
        work_timeout=60.0,
        retry_policy=lambda attempt: 0.1,
        shutdown_grace=2.0,
    )
    async with delta.open_delta_client(
        own_pg.dsn, controllers_of(controller), config=config
    ) as client:
        engine = client._engine  # the services, to check none of them ended
        await client.inform(Job("before"))
        await client.inform(Job("gated"))
        with trio.fail_after(10):
            await controller.gated_started.wait()
        await wait_for(lambda: _is(client, "before", "synced"), 10, "'before' synced")
        with trio.fail_after(10):
            while not client.is_leader:
                await trio.sleep(0.05)

        # -- the database goes away ------------------------------------------
        stopped_at = time.monotonic()
        await trio.to_thread.run_sync(own_pg.stop)
        controller.gate.set()  # 'gated' finishes while its outcome cannot be written

        refused: list[str] = []
        for key in ("during-1", "during-2"):
            with pytest.raises(delta.StoreError) as info:
                await client.inform(Job(key))
            refused.append(str(info.value))
        with pytest.raises(delta.StoreError):
            async with client.transaction() as tx:
                await client.inform_tx(tx, Job("during-tx"))
        with pytest.raises(delta.StoreError):
            await client.get_resource("job", "before")

        await trio.sleep(OUTAGE - (time.monotonic() - stopped_at))
        running = {name for name, h in engine._handles.items() if not h.done.is_set()}
        assert running == set(engine._handles), "a service ended during the outage"
        assert not client.is_leader, "still acting as leader without a database"
        await trio.to_thread.run_sync(own_pg.start)
        restarted_at = time.monotonic()
        outage = restarted_at - stopped_at

        # -- it comes back ---------------------------------------------------
        # The outcome of 'gated' was kept and is written now: synced at its
        # first attempt, worked once, not re-run.
        outcome_after = await wait_for(
            lambda: _is(client, "gated", "synced"),
            10,
            "the outcome written during the outage applied",
        )
        gated = await client.get_resource("job", "gated")
        assert gated is not None
        assert gated.attempt == 1
        assert controller.worked.count(("gated", 1)) == 1
        assert [w for w in controller.worked if w[0] == "gated"] == [("gated", 1)]

        # Nothing informed during the outage exists: a refused inform wrote nothing.
        rows = own_sql(own_pg, f"select object_id from {own_schema}.resources order by 1")
        assert [r[0] for r in rows] == ["before", "gated"]

        # The client works new objects again (the lanes reconnected) ...
        await client.inform(Job("after"))
        await wait_for(lambda: _is(client, "after", "synced"), 10, "'after' synced")
        # ... wins leadership back ...
        leader_after = await wait_for(_leader(client), 3 * config.leader_ttl, "leadership")
        # ... and hears other clients' informs again: its LISTEN connection is back.
        listen_after = await wait_for(
            _listening(own_pg), LISTEN_BACK_WITHIN, "the LISTEN connection re-established"
        )
        async with delta.open_delta_client(
            own_pg.dsn, delta.Controllers(), config=delta.Config(schema=own_schema)
        ) as other:
            await other.inform(Job("from-other"))
            notify_latency = await wait_for(
                lambda: _worked(controller, "from-other"),
                5,
                "work informed by another client (NOTIFY) picked up",
            )

        assert {name for name, h in engine._handles.items() if not h.done.is_set()} == set(
            engine._handles
        )

    log = messages(caplog)
    # Clear warnings, naming what failed, from each service that met the outage.
    assert any("trio_delta.completer" in m and "outcomes failed" in m for m in log), log
    assert any("trio_delta.listener" in m and "LISTEN connection lost" in m for m in log), log
    assert any("trio_delta.fetcher" in m and "claiming work failed" in m for m in log), log
    assert any("trio_delta.leader" in m and "lost leadership" in m for m in log), log
    assert all(("failed" in r) for r in refused), refused
    assert "LISTEN connection re-established" in " ".join(messages(caplog, logging.INFO))
    print(
        f"\noutage {outage:.1f}s; after the restart: outcome applied in {outcome_after:.2f}s, "
        f"leader again in {leader_after:.2f}s, LISTEN back in {listen_after:.2f}s, "
        f"another client's inform worked in {notify_latency:.2f}s"
    )


async def _is(client: delta.Client, key: str, state: str) -> bool:
    return await state_of(client, key) == state


def _leader(client: delta.Client) -> object:
    async def check() -> bool:
        return client.is_leader

    return check


def _listening(server: OwnServer) -> object:
    async def check() -> bool:
        rows = await trio.to_thread.run_sync(
            own_sql, server, "select count(*) from pg_stat_activity where query ilike 'listen %'"
        )
        return bool(rows[0][0])

    return check


async def _worked(controller: GatedController, key: str) -> bool:
    return any(k == key for k, _ in controller.worked)


def test_first_calls_after_the_database_is_back_succeed(own_pg: OwnServer, own_schema: str) -> None:
    # trio.run, not pytest-trio: a StoreError surfaces as itself.
    trio.run(_first_calls_after_a_restart, own_pg, own_schema)


async def _first_calls_after_a_restart(own_pg: OwnServer, own_schema: str) -> None:
    config = delta.Config(schema=own_schema, poll_interval=0.2, pool_size=4)
    # No controllers: no informer borrows (and so weeds out) pool connections.
    async with delta.open_delta_client(own_pg.dsn, delta.Controllers(), config=config) as client:
        await client.inform(Job("x"))
        # Several idle pool connections, as any busy client has.
        async with trio.open_nursery() as nursery:
            for _ in range(4):
                nursery.start_soon(client.get_resource, "job", "x")
        await trio.to_thread.run_sync(own_pg.stop)
        await trio.sleep(0.5)
        await trio.to_thread.run_sync(own_pg.start)
        # The database is up and reachable; the user's next calls should work.
        for _ in range(4):
            assert await client.get_resource("job", "x") is not None
