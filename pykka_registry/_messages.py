"""The messages a registry's facade sends to its server.

Guarantees
----------
* Every message is a frozen attrs value: safe to hand from the caller's
  thread to the server thread; arguments are already checked and metadata
  already copied in the caller's thread.
* A write is sent with ``ask``: the caller gets its result or its exception.
"""
from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import Any

import attrs

from pykka_registry._events import Subscription

__all__ = [
    "Call", "CallRaised", "ClearNamespace", "Join", "Leave", "ReapDeaths", "Register",
    "RegisterMany",
    "Subscribe", "Unregister", "UnregisterMany", "UpdateMetadata",
]


@attrs.define(frozen=True)
class Register:
    namespace: Hashable
    service: Hashable
    actor_ref: Any
    metadata: Mapping[Any, Any]


@attrs.define(frozen=True)
class RegisterMany:
    """``items``: ``(service, actor_ref, metadata)`` triples, already checked
    (keys, refs, metadata copies, no service twice) in the caller's thread."""

    namespace: Hashable
    items: tuple[tuple[Hashable, Any, Mapping[Any, Any]], ...]


@attrs.define(frozen=True)
class Unregister:
    namespace: Hashable
    service: Hashable


@attrs.define(frozen=True)
class UnregisterMany:
    namespace: Hashable
    services: tuple[Hashable, ...]


@attrs.define(frozen=True)
class UpdateMetadata:
    namespace: Hashable
    service: Hashable
    metadata: Mapping[Any, Any]


@attrs.define(frozen=True)
class Join:
    """``metadata`` is already the registry's own copy."""

    namespace: Hashable
    group: Hashable
    actor_ref: Any
    metadata: Mapping[Any, Any]


@attrs.define(frozen=True)
class Leave:
    namespace: Hashable
    group: Hashable
    actor_ref: Any


@attrs.define(frozen=True)
class ClearNamespace:
    namespace: Hashable


@attrs.define(frozen=True)
class Subscribe:
    subscription: Subscription
    replay: bool


@attrs.define(frozen=True)
class Call:
    """Run ``function(state)`` in the server thread (atomic with all writes)."""

    function: Any


@attrs.define(frozen=True)
class CallRaised:
    """The answer to a :class:`Call` whose function raised a ``BaseException``
    that is not an ``Exception`` (``SystemExit``, ``KeyboardInterrupt``...):
    returned, not raised, because Pykka stops every actor of the process when
    a handler raises one. The caller's thread raises ``error`` again."""

    error: BaseException


@attrs.define(frozen=True)
class ReapDeaths:
    """Wake the server: drain queued death notices and submitted functions."""
