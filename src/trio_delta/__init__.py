"""trio_delta: resource synchronization control loops on PostgreSQL, the Trio way.

Everything public is re-exported here; the implementation lives in private
modules.
"""

from __future__ import annotations

from ._client import Client, ClientStats, Transaction
from ._config import Config, NamespaceConfig, ObjectSettings, RateLimit, default_retry_policy
from ._connect import connect
from ._controllers import Controller, Controllers, add_controller
from ._engine.events import Subscription
from ._engine.maintenance import MaintenanceStats
from ._errors import (
    ClientClosedError,
    ClientFailedError,
    ConfigError,
    DeltaError,
    LockTimeoutError,
    NotMigratedError,
    ObjectError,
    ResourceDelete,
    ResourceStateError,
    Snooze,
    StoreError,
    TerminalError,
    TrioRequiredError,
)
from ._health import Health
from ._migrate import migrate
from ._objects import Object
from ._observer import CensusRow, Observer, Observers
from ._running import open_delta_client
from ._store.params import Pause
from ._types import (
    AttemptError,
    Event,
    EventCategory,
    InformerState,
    InformOptions,
    InformOpts,
    InformResult,
    RequeueAfter,
    Resource,
    ResourceRow,
    ResourceState,
)
from ._util import fixup_module_metadata

__version__ = "0.1.0"

__all__ = [
    "AttemptError",
    "CensusRow",
    "Client",
    "ClientClosedError",
    "ClientFailedError",
    "ClientStats",
    "Config",
    "ConfigError",
    "Controller",
    "Controllers",
    "DeltaError",
    "Event",
    "EventCategory",
    "Health",
    "InformOptions",
    "InformOpts",
    "InformResult",
    "InformerState",
    "LockTimeoutError",
    "MaintenanceStats",
    "NamespaceConfig",
    "NotMigratedError",
    "Object",
    "ObjectError",
    "ObjectSettings",
    "Observer",
    "Observers",
    "Pause",
    "RateLimit",
    "RequeueAfter",
    "Resource",
    "ResourceDelete",
    "ResourceRow",
    "ResourceState",
    "ResourceStateError",
    "Snooze",
    "StoreError",
    "Subscription",
    "TerminalError",
    "Transaction",
    "TrioRequiredError",
    "__version__",
    "add_controller",
    "connect",
    "default_retry_policy",
    "migrate",
    "open_delta_client",
]

fixup_module_metadata(__name__, globals())
del fixup_module_metadata
