"""The rescuer: work whose worker is gone is failed and retried.

A ``pending`` row whose attempt started more than ``work_timeout +
rescue_after`` ago belongs to a worker that is gone (killed, partitioned):
it is failed with an error and retried, or degraded when out of attempts.
``work_timeout`` is the longest any kind has; with ``prefetch``, a claimed
row may also wait for a worker, up to one work's timeout for every
``max_workers`` rows claimed ahead of it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta

from ..._config import Config, NamespaceConfig
from ..._controllers import Controllers
from ..._logs import get_logger
from ..._store.params import RescueParams
from .batches import MaintenanceService

log = get_logger("trio_delta.maintenance")

RESCUE_ERROR = "rescued after worker loss"


@dataclass(frozen=True, slots=True)
class RescuerConfig:
    stuck_after: float
    """Seconds a row may be pending before it counts as lost."""
    batch: int = 1000

    @classmethod
    def of(
        cls, config: Config, namespaces: Mapping[str, NamespaceConfig], controllers: Controllers
    ) -> RescuerConfig:
        longest = max(
            [config.work_timeout]
            + [r.settings.work_timeout for r in controllers if r.settings.work_timeout is not None]
        )
        # Rows claimed ahead wait behind at most this many works each.
        queued = max((-(-ns.prefetch // ns.max_workers) for ns in namespaces.values()), default=0)
        return cls(stuck_after=longest * (1 + queued) + config.rescue_after)


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
