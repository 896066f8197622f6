"""Log records carry their fields (``kind``, ``object_id``, ``attempt``,
``client_id`` ...) as attributes, so a JSON formatter needs no parsing;
the message stays readable."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any, ClassVar

import pytest
import trio
import trio.testing

import trio_delta as delta
from trio_delta._logs import Throttled
from trio_delta.testing import open_test_client

from .models import RecordingController, User, controllers_for


class JsonFormatter(logging.Formatter):
    """What docs/operating.md shows: the fields a record carries, as JSON."""

    FIELDS = ("kind", "namespace", "object_id", "attempt", "resource_id", "client_id")

    def format(self, record: logging.LogRecord) -> str:
        data = {"level": record.levelname, "logger": record.name, "message": record.getMessage()}
        data |= {f: getattr(record, f) for f in self.FIELDS if hasattr(record, f)}
        return json.dumps(data)


async def test_a_failed_attempt_is_logged_with_its_fields(
    pg_dsn: str, config: delta.Config, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="trio_delta")
    controller = RecordingController()
    controller.fail = {"f@x": 1}
    async with delta.open_delta_client(pg_dsn, controllers_for(controller), config=config) as c:
        await c.inform(User("f@x", "n", 1))
        with trio.fail_after(10):
            while len(controller.worked) < 2:
                await trio.sleep(0.02)
        client_id = c.id
    failed = [
        r for r in caplog.records if r.name == "trio_delta.worker" and "failed" in r.getMessage()
    ]
    assert failed, [r.getMessage() for r in caplog.records]
    line = json.loads(JsonFormatter().format(failed[0]))
    assert line["kind"] == "user"
    assert line["object_id"] == "f@x"
    assert line["namespace"] == "default"
    assert line["attempt"] == 1
    assert isinstance(line["resource_id"], int)
    assert line["client_id"] == client_id
    assert "f@x" in line["message"]  # still readable as text
    started = [
        r for r in caplog.records if "started" in r.getMessage() and r.name == "trio_delta.leader"
    ]
    # Every record of the engine's services names the client.
    engine_records = [
        r for r in caplog.records if r.name in ("trio_delta.leader", "trio_delta.informer")
    ]
    assert engine_records
    assert all(getattr(r, "client_id", None) == client_id for r in engine_records), started


@dataclass
class Page:
    kind: ClassVar[str] = "page"
    name: str

    def id(self) -> str:
        return self.name


class OneBadPage(delta.Controller[Page]):
    async def inform(self, opts: delta.InformOptions, send: trio.MemorySendChannel[Any]) -> None:
        async with send:
            await send.send(Page("good"))
            await send.send(Page(""))  # an empty id: rejected

    async def work(self, resource: delta.Resource[Page]) -> None:
        pass


async def test_informer_records_name_their_kind(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="trio_delta")
    controllers = delta.Controllers()
    delta.add_controller(controllers, OneBadPage())
    with trio.fail_after(600):
        async with open_test_client(controllers) as t:
            await t.run_until(lambda: t.client.stats.informer_runs == 1)
    records = [r for r in caplog.records if r.name == "trio_delta.informer"]
    messages = [r.getMessage() for r in records]
    assert any("rejected" in m for m in messages), messages
    assert any("1 written" in m for m in messages), messages
    assert all(json.loads(JsonFormatter().format(r))["kind"] == "page" for r in records)


def test_a_throttled_warning_keeps_its_fields(caplog: pytest.LogCaptureFixture) -> None:
    storm = Throttled(logging.getLogger("trio_delta.test"), interval=0.0)
    with caplog.at_level(logging.WARNING, logger="trio_delta.test"):
        storm.warning("informer %s: down", "page", extra={"kind": "page"})
        storm.warning("informer %s: down", "page", extra={"kind": "page"})
    assert [getattr(r, "kind", None) for r in caplog.records] == ["page", "page"]
