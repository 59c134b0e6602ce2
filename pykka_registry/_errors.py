"""The exceptions raised by the registry.

Every error the registry raises on purpose is a :class:`RegistryError`. Where an
error is also a familiar built-in kind (a bad type, a missing key), it subclasses
that built-in too, so ``except TypeError`` and ``except LookupError`` keep
working. A call that raises one of these changed nothing.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any

__all__ = [
    "ActorNotAliveError",
    "AlreadyRegisteredError",
    "DuplicateServiceError",
    "InvalidActorRefError",
    "InvalidBatchItemError",
    "InvalidKeyError",
    "InvalidMetadataError",
    "NotRegisteredError",
    "RegistryError",
    "RegistryTimeoutError",
    "RegistryUnavailableError",
    "UnknownBackendError",
]


class RegistryError(Exception):
    """Base class of every error the registry raises on purpose."""


class AlreadyRegisteredError(RegistryError):
    """The name is held by another live actor.

    ``existing`` is the holder's reference: a :class:`pykka.ActorRef`, or a
    remote reference when the holder lives in another process.
    """

    def __init__(self, namespace: Hashable, service: Hashable, existing: Any) -> None:
        super().__init__(
            f"{service!r} in namespace {namespace!r} is already registered to {existing!r}"
        )
        self.namespace = namespace
        self.service = service
        self.existing = existing

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.namespace, self.service, self.existing))


class NotRegisteredError(RegistryError, LookupError):
    """No live actor holds the name."""

    def __init__(self, namespace: Hashable, service: Hashable, detail: str = "") -> None:
        message = f"no live actor is registered as {service!r} in namespace {namespace!r}"
        super().__init__(f"{message}: {detail}" if detail else message)
        self.namespace = namespace
        self.service = service

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.namespace, self.service))


class ActorNotAliveError(RegistryError):
    """The actor to register has already stopped (or is stopping).

    ``service`` names the offending service when a batch write refused it
    (``None`` otherwise)."""

    def __init__(self, message: str = "", *, service: Hashable = None) -> None:
        super().__init__(message)
        self.service = service

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild_not_alive, (str(self), self.service))


def _rebuild_not_alive(message: str, service: Hashable) -> ActorNotAliveError:
    return ActorNotAliveError(message, service=service)


class DuplicateServiceError(RegistryError, ValueError):
    """A batch write names the same service twice; ``service`` is the first
    repeated one. Nothing was written."""

    def __init__(self, namespace: Hashable, service: Hashable) -> None:
        super().__init__(
            f"{service!r} appears more than once in one batch for namespace {namespace!r}; "
            "nothing was written"
        )
        self.namespace = namespace
        self.service = service

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.namespace, self.service))


class InvalidActorRefError(RegistryError, TypeError):
    """What was given as an actor reference is not a :class:`pykka.ActorRef`."""


class InvalidMetadataError(RegistryError, TypeError):
    """Metadata is not a :class:`~collections.abc.Mapping` (or not one the backend can store)."""


class InvalidBatchItemError(RegistryError, TypeError):
    """An item of a batch write is not a tuple of the expected shape."""


class InvalidKeyError(RegistryError, TypeError):
    """A namespace or service name is unhashable (or not a type the backend can store)."""


class RegistryUnavailableError(RegistryError):
    """The registry's server did not answer: it is stopped, restarting past the
    call's deadline, or (for a networked backend) its store is out of reach.

    A write that raised this may or may not have been applied, as with any
    call whose answer was lost; reads tell which.
    """


class RegistryTimeoutError(RegistryError, TimeoutError):
    """A wait (such as :meth:`Registry.await_name`) ran out of time."""


class UnknownBackendError(RegistryError, ValueError):
    """A backend given by name (``Registry.start(backend="...")``) is not known,
    or its entry point cannot be loaded. The message lists the known names."""
