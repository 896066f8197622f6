"""Log records carry their fields (``kind``, ``object_id``, ``attempt``,
``client_id`` ...) as attributes, so a JSON formatter needs no parsing;
the message stays readable."""

from __future__ import annotations

import json
import logging

import pytest
import trio

import trio_delta as delta

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
