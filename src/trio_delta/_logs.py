"""Warnings that repeat, logged at a bounded rate.

When the database goes away, every service retries, and each retry used to
log a warning: a storm of backend kills made a process log ~200 warnings in
30 s, burying the line that said what happened. A :class:`Throttled` logger
lets the first warning of a kind (one message template) through, holds back
repeats for ``interval`` seconds, and then logs the next one with how many
it held back.
"""

from __future__ import annotations

import contextvars
import logging
import time
from collections.abc import Mapping
from typing import Any

import trio

#: Seconds between two warnings of the same kind.
INTERVAL = 10.0


def _now() -> float:
    # Trio's clock when there is one, so a MockClock moves this too.
    try:
        return trio.current_time()
    except RuntimeError:
        return time.monotonic()


class Throttled:
    def __init__(self, logger: logging.Logger, interval: float = INTERVAL) -> None:
        self.logger = logger
        self.interval = interval
        self._last: dict[str, float] = {}
        self._held: dict[str, int] = {}

    def warning(self, msg: str, *args: Any, extra: Mapping[str, Any] | None = None) -> None:
        """``logger.warning(msg, *args, extra=extra)``, unless a warning of
        the same ``msg`` was logged less than ``interval`` seconds ago."""
        now = _now()
        last = self._last.get(msg)
        if last is not None and now - last < self.interval:
            self._held[msg] = self._held.get(msg, 0) + 1
            return
        self._last[msg] = now
        held = self._held.pop(msg, 0)
        if held:
            self.logger.warning(
                msg + " (and %d more like it in the last %gs)",
                *args,
                held,
                self.interval if last is None else now - last,
                extra=extra,
            )
        else:
            self.logger.warning(msg, *args, extra=extra)


#: The id of the client whose task is logging (Trio tasks inherit it from
#: the client's nursery), for records' ``client_id`` field.
current_client_id: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "trio_delta_client_id", default=None
)


class _ClientField(logging.Filter):
    """Adds ``client_id`` to every record of a trio_delta logger, so a JSON
    formatter gets it without parsing the message."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "client_id"):
            record.client_id = current_client_id.get()
        return True


_FIELD = _ClientField()


def get_logger(name: str) -> logging.Logger:
    """``logging.getLogger(name)``, its records carrying ``client_id``."""
    logger = logging.getLogger(name)
    if _FIELD not in logger.filters:
        logger.addFilter(_FIELD)
    return logger


def resource_fields(resource: Any) -> dict[str, Any]:
    """A resource's fields for a record's ``extra``: kind, namespace,
    object_id, attempt and resource_id."""
    return {
        "kind": resource.kind,
        "namespace": resource.namespace,
        "object_id": resource.object_id,
        "attempt": resource.attempt,
        "resource_id": resource.id,
    }
