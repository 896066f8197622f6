"""The cleaner: synced, degraded and deleted rows past their namespace's
retention are deleted, a bounded batch per statement. Synced rows of a
namespace whose rows expire are expired and worked again, never cleaned."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta

from ..._config import Config, NamespaceConfig, retention_for
from ..._logs import get_logger
from ..._types import ResourceState
from .batches import MaintenanceService

log = get_logger("trio_delta.maintenance")

CLEANED_STATES = (ResourceState.SYNCED, ResourceState.DEGRADED, ResourceState.DELETED)


@dataclass(frozen=True, slots=True)
class CleanerConfig:
    retention: Mapping[tuple[str, ResourceState], float]
    """Seconds a row is kept after its last update, per namespace and state."""
    batch: int = 2000

    @classmethod
    def of(cls, config: Config, namespaces: Mapping[str, NamespaceConfig]) -> CleanerConfig:
        return cls(
            {
                (name, state): retention_for(config, ns, state.value)
                for name, ns in namespaces.items()
                for state in CLEANED_STATES
                if not (state is ResourceState.SYNCED and ns.resource_expiry is not None)
            }
        )


class Cleaner(MaintenanceService[CleanerConfig]):
    async def run_once(self, budget: float) -> Counter[str]:
        """Delete what is past retention now; rows deleted by ``"namespace/state"``."""
        now = self._clock.now()
        cleaned: Counter[str] = Counter()
        for (name, state), retention in self.config.retention.items():
            cut = now - timedelta(seconds=retention)
            count = await self.batches(
                budget,
                lambda name=name, state=state, cut=cut: self._control.clean(
                    name, state, updated_before=cut, limit=self.config.batch
                ),
                self.config.batch,
            )
            if count:
                log.info(
                    "namespace %s: cleaned %d %s resources",
                    name,
                    count,
                    state.value,
                    extra={"namespace": name},
                )
                cleaned[f"{name}/{state.value}"] += count
        return cleaned
