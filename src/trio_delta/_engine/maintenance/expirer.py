"""The expirer: synced rows older than their namespace's ``resource_expiry``
are expired, so they are worked again."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta

from ..._config import NamespaceConfig
from ..._logs import get_logger
from .batches import MaintenanceService

log = get_logger("trio_delta.maintenance")


@dataclass(frozen=True, slots=True)
class ExpirerConfig:
    expiry: Mapping[str, float]
    """Seconds after its sync a row expires, per namespace (only those that expire)."""
    batch: int = 2000

    @classmethod
    def of(cls, namespaces: Mapping[str, NamespaceConfig]) -> ExpirerConfig:
        return cls(
            {
                name: ns.resource_expiry
                for name, ns in namespaces.items()
                if ns.resource_expiry is not None
            }
        )


class Expirer(MaintenanceService[ExpirerConfig]):
    async def run_once(self, budget: float) -> int:
        """Expire what is due now; the number of rows expired."""
        now = self._clock.now()
        total = 0
        for name, expiry in self.config.expiry.items():
            synced_before = now - timedelta(seconds=expiry)
            expired = await self.batches(
                budget,
                lambda name=name, cut=synced_before: self._control.expire(
                    name, now=self._clock.now(), synced_before=cut, limit=self.config.batch
                ),
                self.config.batch,
            )
            if expired:
                log.info(
                    "namespace %s: expired %d synced resources",
                    name,
                    expired,
                    extra={"namespace": name},
                )
            total += expired
        return total
