"""pykka-registry: names, death watch, supervision and a pluggable registry for Pykka.

Importing the package installs its death watch (see :mod:`pykka_registry._deathwatch`):
it wraps ``pykka.ActorRegistry.unregister``, ``stop_all`` and
``pykka.Actor._actor_loop``, once per process.
"""

import logging

from pykka_registry import _deathwatch
from pykka_registry._errors import (
    ActorNotAliveError,
    AlreadyRegisteredError,
    ChildRetired,
    DuplicateServiceError,
    GroupsNotSupportedError,
    InvalidActorRefError,
    InvalidBatchItemError,
    InvalidKeyError,
    InvalidMetadataError,
    InvalidStrategyError,
    InvalidTimeoutError,
    NotRegisteredError,
    RegistryError,
    RegistryTimeoutError,
    RegistryUnavailableError,
    RemoteActorError,
    RemoteTimeoutError,
    RestartIntensityExceeded,
    SupervisorError,
    UnknownBackendError,
)
from pykka_registry._events import (
    Joined,
    Left,
    MetadataUpdated,
    Registered,
    Subscription,
    Unregistered,
    UnregisterReason,
)
from pykka_registry._group_via import GroupVia
from pykka_registry._keys import test_namespace
from pykka_registry._monitor import DownEvent, Monitor, monitor
from pykka_registry._registry import Registry
from pykka_registry._remote import RemoteActorRef
from pykka_registry._server import RegistryServer
from pykka_registry._stats import HealthReport, RegistryStats
from pykka_registry._supervisor import ChildInfo, ChildSpec, Supervisor
from pykka_registry._types import (
    ActorRefLike,
    GroupStrategy,
    HealthStatus,
    RestartType,
    SupervisorStrategy,
)
from pykka_registry._via import Via, ViaProxy
from pykka_registry.backends import Backend, IndexedBackend, MemoryBackend, validate_backend

__version__ = "0.1.0"

__all__ = [
    "ActorNotAliveError",
    "ActorRefLike",
    "AlreadyRegisteredError",
    "Backend",
    "ChildInfo",
    "ChildRetired",
    "ChildSpec",
    "DownEvent",
    "DuplicateServiceError",
    "GroupStrategy",
    "GroupVia",
    "GroupsNotSupportedError",
    "HealthReport",
    "HealthStatus",
    "IndexedBackend",
    "InvalidActorRefError",
    "InvalidBatchItemError",
    "InvalidKeyError",
    "InvalidMetadataError",
    "InvalidStrategyError",
    "InvalidTimeoutError",
    "Joined",
    "Left",
    "MemoryBackend",
    "MetadataUpdated",
    "Monitor",
    "NotRegisteredError",
    "Registered",
    "Registry",
    "RegistryError",
    "RegistryServer",
    "RegistryStats",
    "RegistryTimeoutError",
    "RegistryUnavailableError",
    "RemoteActorError",
    "RemoteActorRef",
    "RemoteTimeoutError",
    "RestartIntensityExceeded",
    "RestartType",
    "Subscription",
    "Supervisor",
    "SupervisorError",
    "SupervisorStrategy",
    "UnknownBackendError",
    "UnregisterReason",
    "Unregistered",
    "Via",
    "ViaProxy",
    "monitor",
    "test_namespace",
    "validate_backend",
]

_deathwatch.install()

# Library etiquette (as Pykka does): log nothing unless the application
# configures logging.
logging.getLogger("pykka_registry").addHandler(logging.NullHandler())
