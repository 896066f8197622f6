"""The rescuer: work whose worker is gone is failed and retried.

A ``pending`` row whose attempt started more than ``work_timeout +
rescue_after`` ago belongs to a worker that is gone (killed, partitioned):
it is failed with an error and retried, or degraded when out of attempts.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta

from ..._config import Config
from ..._store.params import RescueParams
from .batches import MaintenanceService

log = logging.getLogger("trio_delta.maintenance")

RESCUE_ERROR = "rescued after worker loss"


@dataclass(frozen=True, slots=True)
class RescuerConfig:
    stuck_after: float
    """Seconds a row may be pending before it counts as lost."""
    batch: int = 1000

    @classmethod
    def of(cls, config: Config) -> RescuerConfig:
        return cls(stuck_after=config.work_timeout + config.rescue_after)


class Rescuer(MaintenanceService[RescuerConfig]):
    async def run_once(self, budget: float) -> int:
        """Rescue what is stuck now; the number of rows rescued."""
        stuck_before = self._clock.now() - timedelta(seconds=self.config.stuck_after)
        rescued = await self.batches(
            budget,
            lambda: self._control.rescue(
                RescueParams(
                    now=self._clock.now(),
                    stuck_before=stuck_before,
                    limit=self.config.batch,
                    error=RESCUE_ERROR,
                )
            ),
            self.config.batch,
        )
        if rescued:
            log.warning("rescued %d resources from lost workers", rescued)
        return rescued
