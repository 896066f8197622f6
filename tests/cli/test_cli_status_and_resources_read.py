"""`trio-delta status` and `resources list|show` on a known population
(see ``EXPECTED`` in conftest.py)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from tests.cli.conftest import EXPECTED
from trio_delta._admin import STATES
from trio_delta.migrations.runner import LATEST_VERSION


def test_status_json_has_counts_per_kind_and_namespace(
    cli: Any, pg_dsn: str, shared_population: str
) -> None:
    result = cli("status", "--dsn", pg_dsn, "--schema", shared_population, "--json")
    assert result.code == 0, result.err
    data = result.json
    assert set(data) == {
        "schema",
        "database",
        "schema_version",
        "now",
        "resources",
        "totals",
        "controllers",
        "paused",
        "leader",
    }
    assert data["schema"] == shared_population
    assert data["schema_version"] == LATEST_VERSION
    assert data["leader"] is None  # the populating client resigned when it stopped
    assert data["paused"] == []
    datetime.fromisoformat(data["now"])

    groups = {(g["kind"], g["namespace"]): g for g in data["resources"]}
    assert set(groups) == {("cli-item", "default"), ("cli-item", "other")}
    for (kind, namespace), group in groups.items():
        assert kind == "cli-item"
        assert set(group) == {
            "kind",
            "namespace",
            "total",
            "states",
            "oldest_scheduled_at",
            "oldest_scheduled_age_seconds",
            "waiting",
            "snoozed",
        }
        assert list(group["states"]) == list(STATES)
        expected = {state: n for (ns, state), n in EXPECTED.items() if ns == namespace}
        assert {s: n for s, n in group["states"].items() if n} == expected
        assert group["total"] == sum(expected.values())
        assert group["oldest_scheduled_age_seconds"] is None  # nothing scheduled
    assert data["totals"] == {
        **dict.fromkeys(STATES, 0),
        "synced": 4,
        "degraded": 1,
        "failed": 1,
        "total": 6,
        "waiting": 0,
        "snoozed": 0,
    }

    (controller,) = data["controllers"]
    assert controller["kind"] == "cli-item"
    assert set(controller) == {
        "kind",
        "last_inform_at",
        "next_inform_at",
        "last_error",
        "informing_on",
        "requested_at",
        "cursor",
    }
    assert controller["next_inform_at"] is None  # inform_interval=-1: no periodic runs
    assert controller["informing_on"] is None


def test_status_filters_by_kind_and_namespace(
    cli: Any, pg_dsn: str, shared_population: str
) -> None:
    result = cli(
        "status",
        "--dsn",
        pg_dsn,
        "--schema",
        shared_population,
        "--json",
        "--kind",
        "cli-item",
        "--namespace",
        "other",
    )
    assert result.code == 0, result.err
    (group,) = result.json["resources"]
    assert (group["namespace"], group["total"], group["states"]["synced"]) == ("other", 1, 1)


def test_status_table(cli: Any, pg_dsn: str, shared_population: str) -> None:
    result = cli("status", "--dsn", pg_dsn, "--schema", shared_population)
    assert result.code == 0, result.err
    assert f"schema {shared_population} on " in result.out
    assert "leader: none" in result.out
    for word in ("cli-item", "default", "other", "synced", "degraded", "failed", "controllers"):
        assert word in result.out


def _ids(result: Any) -> list[str]:
    assert result.code == 0, result.err
    return [r["object_id"] for r in result.json]


def test_resources_list_filters(cli: Any, pg_dsn: str, shared_population: str) -> None:
    base = ("resources", "list", "--dsn", pg_dsn, "--schema", shared_population, "--json")
    everything = cli(*base)
    assert _ids(everything) == ["good-1", "good-2", "good-3", "bad-1", "bad-2", "good-4"]
    first = everything.json[0]
    assert first["kind"] == "cli-item"
    assert first["object"] == {"name": "good-1", "colour": "blue", "extra": {}}
    assert first["tags"] == ["blue"]

    assert _ids(cli(*base, "--kind", "cli-item", "--state", "degraded")) == ["bad-1"]
    assert _ids(cli(*base, "--state", "failed", "--state", "degraded")) == ["bad-1", "bad-2"]
    assert _ids(cli(*base, "--tag", "blue")) == ["good-1", "good-2"]
    assert _ids(cli(*base, "--tag", "blue", "--tag", "big")) == ["good-2"]
    assert _ids(cli(*base, "--namespace", "other")) == ["good-4"]
    assert _ids(cli(*base, "--limit", "2")) == ["good-1", "good-2"]
    assert _ids(cli(*base, "--state", "pending")) == []


def test_resources_list_table(cli: Any, pg_dsn: str, shared_population: str) -> None:
    result = cli(
        "resources", "list", "--dsn", pg_dsn, "--schema", shared_population, "--state", "degraded"
    )
    assert result.code == 0, result.err
    assert "1 resource" in result.out
    assert "bad-1" in result.out
    assert "boom: bad-1" in result.out
    assert "good-1" not in result.out


def test_resources_show(cli: Any, pg_dsn: str, shared_population: str) -> None:
    base = ("resources", "show", "--dsn", pg_dsn, "--schema", shared_population)
    result = cli(*base, "cli-item", "bad-1", "--json")
    assert result.code == 0, result.err
    data = result.json
    assert (data["object_id"], data["state"], data["attempt"], data["max_attempts"]) == (
        "bad-1",
        "degraded",
        1,
        1,
    )
    assert [e["error"] for e in data["errors"]] == ["RuntimeError: boom: bad-1"]

    table = cli(*base, "cli-item", "bad-1")
    assert table.code == 0, table.err
    for text in ("degraded", '"name": "bad-1"', "boom: bad-1", "attempt 1"):
        assert text in table.out

    missing = cli(*base, "cli-item", "no-such-id")
    assert missing.code == 1
    assert missing.err_lines == ["trio-delta: error: no cli-item resource with id 'no-such-id'"]
