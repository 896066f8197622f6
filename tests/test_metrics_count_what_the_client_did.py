"""``PrometheusMetrics`` counts what the client did, and the leader's census
reports the whole table; ``client.health()`` says what it last did."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Generator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import trio
from prometheus_client import CollectorRegistry, generate_latest

import trio_delta as delta
from trio_delta.metrics import PrometheusMetrics

from .models import RecordingController, User, controllers_for


def in_an_hour() -> datetime:
    return datetime.now(UTC) + timedelta(hours=1)


def value(registry: CollectorRegistry, name: str, **labels: str) -> float:
    found = registry.get_sample_value(name, labels)
    return 0.0 if found is None else found


async def test_metrics_count_works_informs_and_the_census(
    pg_dsn: str, config: delta.Config
) -> None:
    registry = CollectorRegistry()
    cfg = dataclasses.replace(config, observer=PrometheusMetrics(registry), census_interval=0.1)
    controller = RecordingController()
    controller.fail = {"u0@x": 1, "u1@x": 1}  # each fails once, then syncs
    async with delta.open_delta_client(pg_dsn, controllers_for(controller), config=cfg) as client:
        await client.inform_many([User(f"u{i}@x", "n", 1) for i in range(10)])  # 10 new
        with trio.fail_after(20):
            while len(await client.list_resources(state=delta.ResourceState.SYNCED)) < 10:
                await trio.sleep(0.05)
        await client.inform_many([User(f"u{i}@x", "n", 2) for i in range(4)])  # 4 changed
        await client.inform(User("u9@x", "n", 1))  # unchanged
        await client.inform(User("u0@x", "older", 1))  # stale: u0 is at 2 (compare)
        with trio.fail_after(20):
            while (
                value(
                    registry,
                    "trio_delta_resources",
                    kind="user",
                    namespace="default",
                    state="synced",
                )
                != 10
                or value(
                    registry,
                    "trio_delta_works_total",
                    kind="user",
                    namespace="default",
                    outcome="synced",
                )
                != 14
                or client.stats.informer_runs < 1
            ):
                await trio.sleep(0.05)
        health = await client.health()
        # Nothing scheduled: no oldest-due series. One scheduled for later
        # (not yet due) shows it, at zero.
        assert (
            registry.get_sample_value(
                "trio_delta_oldest_due_seconds", {"kind": "user", "namespace": "default"}
            )
            is None
        )
        await client.inform(User("later@x", "n", 1), delta.InformOpts(run_at=in_an_hour()))
        with trio.fail_after(20):
            while (
                value(
                    registry,
                    "trio_delta_resources",
                    kind="user",
                    namespace="default",
                    state="scheduled",
                )
                != 1
            ):
                await trio.sleep(0.05)
        assert (
            registry.get_sample_value(
                "trio_delta_oldest_due_seconds", {"kind": "user", "namespace": "default"}
            )
            == 0
        )
        # Scraped from another thread, as prometheus_client's own exporter does.
        text = await trio.to_thread.run_sync(generate_latest, registry)
        assert b"trio_delta_is_leader 1.0" in text

    works = {
        outcome: value(
            registry, "trio_delta_works_total", kind="user", namespace="default", outcome=outcome
        )
        for outcome in ("synced", "failed", "degraded")
    }
    assert works == {"synced": 14, "failed": 2, "degraded": 0}
    assert value(registry, "trio_delta_works_started_total", kind="user", namespace="default") == 16
    assert value(registry, "trio_delta_claimed_rows_total", namespace="default") == 16
    assert value(registry, "trio_delta_outcomes_written_total") == 16
    assert (
        value(registry, "trio_delta_work_duration_seconds_count", kind="user", namespace="default")
        == 16
    )
    buckets = [
        value(
            registry,
            "trio_delta_work_duration_seconds_bucket",
            kind="user",
            namespace="default",
            le=le,
        )
        for le in ("0.001", "0.1", "600.0", "+Inf")
    ]
    assert buckets == sorted(buckets)
    assert buckets[-1] == 16
    assert value(registry, "trio_delta_informs_total", kind="user", result="new") == 11
    assert value(registry, "trio_delta_informs_total", kind="user", result="changed") == 4
    assert value(registry, "trio_delta_informs_total", kind="user", result="unchanged") == 1
    assert value(registry, "trio_delta_informs_total", kind="user", result="stale") == 1
    assert value(registry, "trio_delta_outcome_write_seconds_count") >= 1
    assert value(registry, "trio_delta_claim_batch_rows_count", namespace="default") >= 1
    assert value(registry, "trio_delta_claim_batch_rows_sum", namespace="default") == 16
    assert value(registry, "trio_delta_informer_runs_total", kind="user", result="ok") >= 1
    assert value(registry, "trio_delta_informer_run_duration_seconds_count", kind="user") >= 1
    pool_max = value(registry, "trio_delta_pool_connections_max")
    assert pool_max == health.pool_size
    assert 0 <= value(registry, "trio_delta_pool_connections_in_use") <= pool_max

    assert health.running
    assert health.database
    assert health.ready
    assert health.is_leader
    assert health.leader_lease_left is not None
    assert health.listening is True
    assert health.last_claim is not None
    assert health.last_outcome_write is not None
    assert health.pool_size >= 2
    assert 0 <= health.pool_in_use <= health.pool_size


class Broken(delta.Observer):
    def work_ended(self, kind: str, namespace: str, outcome: str, seconds: float) -> None:
        raise RuntimeError("a bug in the observer")

    @contextmanager
    def trace_work(
        self, kind: str, namespace: str, object_id: str, attempt: int, metadata: Mapping[str, Any]
    ) -> Generator[Callable[[str, BaseException | None], None], None, None]:
        def finish(outcome: str, error: BaseException | None) -> None:
            raise RuntimeError("a bug in the observer's finish")

        yield finish


async def test_an_observer_that_raises_never_stops_the_work(
    pg_dsn: str, config: delta.Config
) -> None:
    controller = RecordingController()
    cfg = dataclasses.replace(config, observer=Broken())
    async with delta.open_delta_client(pg_dsn, controllers_for(controller), config=cfg) as client:
        await client.inform_many([User(f"b{i}@x", "n", 1) for i in range(5)])
        with trio.fail_after(20):
            while len(await client.list_resources(state=delta.ResourceState.SYNCED)) < 5:
                await trio.sleep(0.05)
        assert (await client.health()).running
        # Worked once each, synced at the first attempt: the observer's
        # failures did not become the works' failures.
        rows = await client.list_resources(state=delta.ResourceState.SYNCED)
        assert [r.attempt for r in rows] == [1] * 5
    assert len(controller.worked) == 5


def test_work_durations_fall_in_the_bucket_whose_bound_they_do_not_pass() -> None:
    registry = CollectorRegistry()
    metrics = PrometheusMetrics(registry)
    for seconds in (0.0004, 0.001, 0.0011, 0.5, 700.0):
        metrics.work_ended("user", "default", "synced", seconds)
    metrics.work_started("user", "default")

    def bucket(le: str) -> float | None:
        return registry.get_sample_value(
            "trio_delta_work_duration_seconds_bucket",
            {"kind": "user", "namespace": "default", "le": le},
        )

    # Cumulative, "le" inclusive: 0.001 counts in the 0.001 bucket.
    assert [bucket(le) for le in ("0.001", "0.005", "0.5", "600.0", "+Inf")] == [2, 3, 4, 4, 5]
    labels = {"kind": "user", "namespace": "default"}
    assert registry.get_sample_value("trio_delta_work_duration_seconds_count", labels) == 5
    assert registry.get_sample_value(
        "trio_delta_work_duration_seconds_sum", labels
    ) == pytest.approx(700.5025)
    assert registry.get_sample_value("trio_delta_works_total", {**labels, "outcome": "synced"}) == 5
    assert registry.get_sample_value("trio_delta_works_started_total", labels) == 1
    # A second instance on the same registry collides, as prometheus_client's own metrics do.
    with pytest.raises(ValueError, match="Duplicated timeseries"):
        PrometheusMetrics(registry)
