"""What every engine service of one client shares."""

from __future__ import annotations

from dataclasses import dataclass

from .._config import Config
from .._controllers import Controllers
from .._store.port import Store
from .clock import Clock


@dataclass(frozen=True, slots=True)
class EngineContext:
    """The store, the clock, who we are and how we are configured."""

    store: Store
    clock: Clock
    client_id: str
    config: Config
    controllers: Controllers

    @property
    def notified(self) -> bool:
        """Whether every change reaches us as a notification (the memory
        store, when listening): then nothing need be polled for."""
        return self.store.notifications_reliable and self.config.listen
