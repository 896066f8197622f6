"""What every engine service of one client shares."""

from __future__ import annotations

from dataclasses import dataclass, field

from .._config import Config
from .._controllers import Controllers
from .._observer import Observer, SafeObserver
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
    observer: Observer | None = field(init=False)
    """The configured observer, its errors caught; None without one."""

    def __post_init__(self) -> None:
        observer = self.config.observer
        object.__setattr__(self, "observer", None if observer is None else SafeObserver(observer))

    @property
    def notified(self) -> bool:
        """Whether every change reaches us as a notification (the memory
        store, when listening): then nothing need be polled for."""
        return self.store.notifications_reliable and self.config.listen
