"""The exceptions trio_delta raises, all rooted at :class:`DeltaError`."""

from __future__ import annotations


class DeltaError(Exception):
    """Base class of every error trio_delta raises on purpose."""


class ConfigError(DeltaError, ValueError):
    """A configuration value, controller or argument is invalid.

    Raised before anything is started or written.
    """


class ObjectError(DeltaError, ValueError):
    """An object cannot be informed: invalid id, kind, tags or metadata, or not
    encodable as JSON. Nothing was written.

    ``index`` is the object's position when a batch was informed
    (``inform_many``), else None.
    """

    def __init__(self, message: str, *, index: int | None = None) -> None:
        super().__init__(message)
        self.index = index


class NotMigratedError(DeltaError):
    """The database schema is missing or older than this version of the library."""


class StoreError(DeltaError):
    """The store (database) failed; the operation did not take effect, or its
    effect is unknown when ``maybe_applied`` is true.

    ``sqlstate`` is the server's error code when the server refused the
    statement (``"23505"``, a unique violation; ``"P0001"``, an exception
    raised by a trigger), None when the error came from elsewhere (a
    connection lost, the memory store).
    """

    def __init__(
        self, message: str, *, maybe_applied: bool = False, sqlstate: str | None = None
    ) -> None:
        super().__init__(message)
        self.maybe_applied = maybe_applied
        self.sqlstate = sqlstate


class LockTimeoutError(StoreError):
    """A row stayed locked by another transaction for longer than
    :attr:`Config.lock_timeout`; nothing was written.

    ``kind`` and ``object_id`` name the row (for a batch, the first one found
    held; None when it was released before it could be named).
    """

    def __init__(
        self, message: str, *, kind: str | None = None, object_id: str | None = None
    ) -> None:
        super().__init__(message)
        self.kind = kind
        self.object_id = object_id


class ResourceStateError(DeltaError):
    """An operation is not allowed in the resource's current state (for example
    invalidating a resource that is not synced)."""


class TrioRequiredError(DeltaError, RuntimeError):
    """A function that runs on Trio was called from another async library
    (asyncio, most likely) or outside any. From asyncio, inform with
    :mod:`trio_delta.producer`; run the workers under Trio (``trio.run``, or
    ``trio-delta run``)."""


class ClientClosedError(DeltaError):
    """The client is stopping or stopped and cannot take this call."""


class ClientFailedError(DeltaError):
    """A trio_delta service failed; the client stopped.

    The original exception is chained as ``__cause__``.
    """


class ResourceDelete(Exception):
    """Raise from :meth:`Controller.work` to delete the resource (soft delete).

    The resource moves to the ``deleted`` state and is removed by the cleaner
    once the namespace's ``deleted_retention`` has passed.
    """

    def __init__(self, reason: str = "") -> None:
        super().__init__(reason)
        self.reason = reason


class Snooze(Exception):
    """Raise from :meth:`Controller.work` to look again in ``seconds``.

    Not a failure: no attempt is spent and no error recorded; the resource
    is due again at now + ``seconds`` and its ``snoozes`` count goes up by one.
    """

    def __init__(self, seconds: float) -> None:
        seconds = check_delay("Snooze", seconds)
        super().__init__(seconds)
        self.seconds = seconds


class TerminalError(Exception):
    """Raise from :meth:`Controller.work` for a failure that no retry can
    mend: the resource is degraded at once, with ``reason`` recorded as its
    error, and is not worked again until its object changes."""

    def __init__(self, reason: str = "") -> None:
        super().__init__(reason)
        self.reason = reason


def check_delay(what: str, seconds: object) -> float:
    """``seconds`` of a delay work asks for, as a float: a finite number >= 0."""
    if isinstance(seconds, bool) or not isinstance(seconds, int | float):
        raise TypeError(f"{what}: seconds must be a number, got {seconds!r}")
    value = float(seconds)
    if not 0 <= value < float("inf"):
        raise ValueError(f"{what}: seconds must be finite and >= 0, got {seconds!r}")
    return value
