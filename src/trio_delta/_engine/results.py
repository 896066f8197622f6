"""What a work's result means for its row.

A worker captures what ``Controller.work`` did as an :mod:`outcome` (a
``Value`` or an ``Error``) and hands it, with the resource, to the outcome
writer; :class:`Judge` turns that into what the store records: synced,
deleted, failed with a retry time, degraded when out of attempts (or at
once, for a :class:`TerminalError`), requeued or snoozed. A row
the client gives up without a verdict (a forced stop) is handed back.

Beside it, the names a failed work is recorded under (a timeout, an object
that no longer decodes, a stray ``Cancelled``, asyncio without a loop) and
the sorting of what a work raised: what must end the client, what is the
engine's own cancellation.
"""

from __future__ import annotations

import traceback
from dataclasses import dataclass
from datetime import timedelta
from types import TracebackType
from typing import Any

import outcome
import trio

from .._errors import ResourceDelete, Snooze, TerminalError
from .._logs import get_logger, resource_fields
from .._observer import Finish
from .._store.params import Outcome, OutcomeKind
from .._types import AttemptError, RequeueAfter, Resource
from .context import EngineContext

log = get_logger("trio_delta.worker")

MAX_TRACE = 8000
MAX_MESSAGE = 2000
#: The longest retry delay a retry policy may ask for.
MAX_RETRY_DELAY = 365 * 24 * 3600.0


class WorkTimeout(Exception):
    """The work ran past ``Config.work_timeout`` and was cancelled."""


class Undecodable(Exception):
    """The stored object no longer fits the controller's object type."""


class StrayCancelled(Exception):
    """The work raised ``trio.Cancelled`` while nothing had cancelled it (a
    Cancelled re-raised outside its own cancel scope, say); the original is
    the ``__cause__``."""


def without_this_frame(exc: BaseException) -> TracebackType | None:
    """``exc``'s traceback from the work's own frame on (as acapture keeps it)."""
    tb = exc.__traceback__
    return None if tb is None else tb.tb_next


class NoAsyncioLoop(RuntimeError):
    """A work called into asyncio on a client without ``Config(asyncio=True)``."""


def needed_asyncio(error: Exception) -> bool:
    """Whether ``error`` is trio-asyncio finding no loop to run asyncio code on
    (it fails with an AttributeError on its missing loop, saying nothing of
    what to do)."""
    return isinstance(error, AttributeError) and "run_aio_coroutine" in str(error)


def first_fatal(exc: BaseException) -> BaseException | None:
    """The first exception in ``exc`` that must end the client: a
    BaseException that is neither an Exception nor a Cancelled."""
    if isinstance(exc, BaseExceptionGroup):
        for sub in exc.exceptions:  # pyright: ignore[reportUnknownVariableType,reportUnknownMemberType]
            found = first_fatal(sub)  # pyright: ignore[reportUnknownArgumentType]
            if found is not None:
                return found
        return None
    if isinstance(exc, Exception | trio.Cancelled):
        return None
    return exc


def without_cancelled(exc: BaseException) -> BaseException | None:
    """``exc`` less any ``trio.Cancelled`` in it (None if nothing is left)."""
    if isinstance(exc, trio.Cancelled):
        return None
    if isinstance(exc, BaseExceptionGroup):
        _, rest = exc.split(trio.Cancelled)  # pyright: ignore[reportUnknownVariableType,reportUnknownMemberType]
        return rest  # pyright: ignore[reportUnknownVariableType]
    return exc


#: The result of every work that returned None: one shared Value rather
#: than one built per row (nothing unwraps a work's Value; readers look at
#: ``.value``).
RETURNED_NONE: outcome.Value[object] = outcome.Value(None)


@dataclass(slots=True)  # one per worked resource: not frozen, cheaper to build
class Completion:
    """A claimed resource and what became of it: ``result`` is the work's
    outcome, None for a row handed back without one."""

    resource: Resource[Any]
    result: outcome.Outcome[object] | None
    seconds: float = 0.0
    """How long the work ran."""
    cancelled: bool = False
    """The resource was cancelled (or deleted) while its work ran."""


def clean_text(text: str, limit: int) -> str:
    """Text Postgres' jsonb can hold: no NUL, no lone surrogates, bounded."""
    text = text.replace("\x00", "\\x00")
    text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text if len(text) <= limit else text[: limit - 3] + "..."


def describe_exception(exc: BaseException) -> str:
    """``Type: message``, even for an exception whose ``__str__`` raises; for
    an exception group, followed by its first few exceptions (a group's own
    message says only how many it holds)."""
    try:
        text = str(exc)
    except Exception:
        text = "<exception str() failed>"
    if isinstance(exc, Undecodable):
        return f"cannot decode the stored object: {text}"
    if isinstance(exc, WorkTimeout):
        return f"TimeoutError: {text}"
    described = f"{type(exc).__name__}: {text}"
    if isinstance(exc, BaseExceptionGroup):
        inner = [describe_exception(e) for e in exc.exceptions[:3]]  # pyright: ignore[reportUnknownVariableType,reportUnknownMemberType,reportUnknownArgumentType]
        described += " [" + "; ".join(inner) + (" ..." if len(exc.exceptions) > 3 else "") + "]"  # pyright: ignore[reportUnknownMemberType,reportUnknownArgumentType]
    return described


def format_trace(exc: BaseException) -> str:
    if isinstance(exc, WorkTimeout):
        return ""  # where a cancelled work stood says nothing about why it was late
    try:
        return "".join(traceback.format_exception(exc))
    except Exception:
        return describe_exception(exc)


#: How the observer names each outcome (see ``Observer.work_ended``).
WORK_OUTCOME_NAMES = {
    OutcomeKind.SYNCED: "synced",
    OutcomeKind.FAILED: "failed",
    OutcomeKind.DEGRADED: "degraded",
    OutcomeKind.DELETED: "deleted",
    OutcomeKind.REQUEUE: "requeued",
    OutcomeKind.SNOOZE: "snoozed",
    OutcomeKind.HANDBACK: "handed_back",
}


def outcome_name(resource: Resource[Any], result: outcome.Outcome[object] | None) -> str:
    """What a work's result will make of its resource, as the observer names
    it, known where the work ran (the outcome writer decides the same)."""
    if result is RETURNED_NONE:
        return "synced"
    if result is None:
        return "handed_back"
    if isinstance(result, outcome.Value):
        return "requeued" if isinstance(result.value, RequeueAfter) else "synced"
    assert isinstance(result, outcome.Error)
    error = result.error
    if isinstance(error, ResourceDelete):
        return "deleted"
    if isinstance(error, Snooze):
        return "snoozed"
    if isinstance(error, TerminalError) or resource.attempt >= resource.max_attempts:
        return "degraded"
    return "failed"


def interrupted_result(
    failure: BaseException | None, *, handed_back: bool, timeout: float
) -> outcome.Outcome[object] | None:
    """The result of a work its worker's scope ended, or that raised what
    the worker let through (``failure``, less the Cancelled the scope took):
    a BaseException that must end the client fails the attempt; otherwise
    none (the row handed back) when the pool itself was cancelled or
    ``handed_back`` (a forced stop, or a row cancelled while it ran: the
    store refuses it, no longer pending), else ``failure``, or else a
    timeout after ``timeout`` seconds."""
    if failure is not None and not isinstance(failure, Exception):
        fatal = first_fatal(failure)
        if fatal is not None:
            return outcome.Error(without_cancelled(failure) or fatal)
        return None  # cancelled from outside the worker: hand it back
    if handed_back:
        return None
    if failure is not None:
        return outcome.Error(failure)
    return outcome.Error(WorkTimeout(f"work timed out after {timeout:g}s"))


def finish_span(
    finish: Finish,
    resource: Resource[Any],
    result: outcome.Outcome[object] | None,
    *,
    cancelled: bool = False,
) -> None:
    """Tell a work's span its outcome, named as the outcome writer names it."""
    error = result.error if isinstance(result, outcome.Error) else None
    # A row cancelled or deleted while its work ran is "cancelled", whatever
    # the work did as it was cancelled.
    finish("cancelled" if cancelled else outcome_name(resource, result), error)


def handback(resource: Resource[Any]) -> Outcome:
    return Outcome(resource.id, resource.attempt, resource.hash, OutcomeKind.HANDBACK)


class Judge:
    """Turns completions into the outcomes the store writes."""

    def __init__(self, ctx: EngineContext) -> None:
        self._clock = ctx.clock
        self._config = ctx.config
        self._retry_policies = {
            reg.kind: reg.settings.retry_policy or ctx.config.retry_policy
            for reg in ctx.controllers
        }

    def outcome(self, completion: Completion) -> Outcome:
        resource, result = completion.resource, completion.result
        if result is RETURNED_NONE:  # the common case, first (Outcome is an ABC: slow to ask)
            return Outcome(resource.id, resource.attempt, resource.hash, OutcomeKind.SYNCED)
        if result is None:
            return handback(resource)
        if isinstance(result, outcome.Value):
            value: object = result.value
            if isinstance(value, RequeueAfter):
                return self._later(resource, OutcomeKind.REQUEUE, value.seconds)
            return Outcome(resource.id, resource.attempt, resource.hash, OutcomeKind.SYNCED)
        assert isinstance(result, outcome.Error)
        error = result.error
        if isinstance(error, ResourceDelete):
            log.info(
                "%s %r deleted by work: %s",
                resource.kind,
                resource.object_id,
                error.reason,
                extra=resource_fields(resource),
            )
            return Outcome(resource.id, resource.attempt, resource.hash, OutcomeKind.DELETED)
        if isinstance(error, Snooze):
            log.debug(
                "%s %r snoozed for %gs",
                resource.kind,
                resource.object_id,
                error.seconds,
                extra=resource_fields(resource),
            )
            return self._later(resource, OutcomeKind.SNOOZE, error.seconds)
        return self._failure(resource, error)

    def _later(self, resource: Resource[Any], kind: OutcomeKind, seconds: float) -> Outcome:
        """Synced and requeued, or snoozed: due again ``seconds`` from now."""
        delay = timedelta(seconds=min(seconds, MAX_RETRY_DELAY))
        return Outcome(
            resource.id, resource.attempt, resource.hash, kind, retry_at=self._clock.now() + delay
        )

    def _failure(self, resource: Resource[Any], exc: BaseException) -> Outcome:
        now = self._clock.now()
        message = clean_text(describe_exception(exc), MAX_MESSAGE)
        trace = clean_text(format_trace(exc), MAX_TRACE)
        error = AttemptError(at=now, attempt=resource.attempt, error=message, trace=trace)
        if isinstance(exc, TerminalError):
            log.error(
                "%s %r degraded: %s",
                resource.kind,
                resource.object_id,
                message,
                extra=resource_fields(resource),
            )
            return Outcome(
                resource.id, resource.attempt, resource.hash, OutcomeKind.DEGRADED, error=error
            )
        if resource.attempt >= resource.max_attempts:
            log.error(
                "%s %r degraded after %d attempts: %s",
                resource.kind,
                resource.object_id,
                resource.attempt,
                message,
                extra=resource_fields(resource),
            )
            return Outcome(
                resource.id, resource.attempt, resource.hash, OutcomeKind.DEGRADED, error=error
            )
        delay = self._retry_delay(resource.kind, resource.attempt)
        log.warning(
            "%s %r attempt %d/%d failed, retry in %.3gs: %s",
            resource.kind,
            resource.object_id,
            resource.attempt,
            resource.max_attempts,
            delay,
            message,
            extra=resource_fields(resource),
        )
        return Outcome(
            resource.id,
            resource.attempt,
            resource.hash,
            OutcomeKind.FAILED,
            error=error,
            retry_at=now + timedelta(seconds=delay),
        )

    def _retry_delay(self, kind: str, attempt: int) -> float:
        policy = self._retry_policies.get(kind, self._config.retry_policy)
        try:
            delay = float(policy(attempt))
        except Exception:
            log.exception("retry_policy(%d) raised; retrying in 1s", attempt, extra={"kind": kind})
            return 1.0
        if not delay >= 0:  # also catches NaN
            log.error(
                "retry_policy(%d) returned %r; retrying in 1s",
                attempt,
                delay,
                extra={"kind": kind},
            )
            return 1.0
        return min(delay, MAX_RETRY_DELAY)
