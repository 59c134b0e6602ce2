"""Messages to actors in other processes (used by
:mod:`pykka_registry.backends.redis`), in three modules:

* :mod:`._wire`: the wire format: :class:`Codec` (signed envelopes) and the
  :class:`ReplayGuard`;
* :mod:`._ref`: :class:`RemoteActorRef` and the links behind it;
* :mod:`._messenger`: the per-process :class:`Messenger` and the
  :class:`Transport` it reaches other nodes through.

This package re-exports their names, so ``from pykka_registry._remote import X``
keeps working; the exceptions live in :mod:`pykka_registry._errors` (re-exported
here too).

Guarantees
----------
Those of its modules, in short: nothing unverified is ever unpickled; only
named actors are reachable; delivery is at most once; every ask has a
deadline; no actor ever blocks on the transport. Each module's docstring says
which thread runs what.
"""

from __future__ import annotations

from pykka_registry._errors import (
    MIN_SECRET_BYTES,
    InvalidSecretError,
    RemoteActorError,
    RemoteTimeoutError,
)
from pykka_registry._remote._messenger import CallbackTransport, Messenger, Transport
from pykka_registry._remote._ref import ActorLink, NodeLink, RemoteActorRef
from pykka_registry._remote._wire import (
    ASK,
    ERROR,
    MAGIC,
    REPLY,
    STOP,
    TELL,
    WAKE,
    Codec,
    ReplayGuard,
    secret_key,
)

__all__ = [
    "ASK",
    "ERROR",
    "MAGIC",
    "MIN_SECRET_BYTES",
    "REPLY",
    "STOP",
    "TELL",
    "WAKE",
    "ActorLink",
    "CallbackTransport",
    "Codec",
    "InvalidSecretError",
    "Messenger",
    "NodeLink",
    "RemoteActorError",
    "RemoteActorRef",
    "RemoteTimeoutError",
    "ReplayGuard",
    "Transport",
    "secret_key",
]
