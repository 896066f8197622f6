"""What every engine service of one client shares."""

from __future__ import annotations

from dataclasses import dataclass, field

from .._config import Config
from .._controllers import Controllers
from .._observer import Observer, SafeObserver, traces
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
    tracer: Observer | None = field(init=False)
    """The same, when it overrides the trace hooks (else they are not called)."""

    def __post_init__(self) -> None:
        observer = self.config.observer
        safe = None if observer is None else SafeObserver(observer)
        object.__setattr__(self, "observer", safe)
        tracing = observer is not None and traces(observer)
        object.__setattr__(self, "tracer", safe if tracing else None)

    @property
    def notified(self) -> bool:
        """Whether every change reaches us as a notification (the memory
        store, when listening): then nothing need be polled for."""
        return self.store.notifications_reliable and self.config.listen
