"""``Client.health()``: whether a client is alive and can do its job.

Liveness and readiness, as an orchestrator probes them: a client is
*running* while every one of its services is (none ended by a bug), and
*ready* when it is running and the database answers. The rest says what
an operator looks at next: whether notifications arrive, when work was
last claimed and outcomes last written, the leader's lease, the pool.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Health:
    """A client's health at one moment (see :meth:`Client.health`).

    Times are seconds ago (or, for the lease, seconds left); None when it
    has not happened (or does not apply).
    """

    running: bool
    """Every service of the client is running (none has ended)."""
    database: bool
    """A round trip to the database just succeeded."""
    database_error: str | None
    """Why it did not, when it did not."""
    listening: bool | None
    """The LISTEN connection is up; None with ``Config(listen=False)``."""
    is_leader: bool
    leader_lease_left: float | None
    """Seconds until this client's leadership lapses unless renewed."""
    last_claim: float | None
    """Seconds since a claim last succeeded (whether or not it found work)."""
    last_outcome_write: float | None
    """Seconds since a batch of outcomes was last written."""
    pool_in_use: int
    pool_size: int

    @property
    def ready(self) -> bool:
        """Running, and the database answers: fit to take work."""
        return self.running and self.database
