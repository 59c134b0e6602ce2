"""The exceptions raised by the registry.

Every error the registry raises on purpose is a :class:`RegistryError`. Where an
error is also a familiar built-in kind (a bad type, a missing key), it subclasses
that built-in too, so ``except TypeError`` and ``except LookupError`` keep
working. A call that raises one of these changed nothing (every copy and
check a write makes, the copy of the metadata for its event included, comes
before anything is stored), with these stated exceptions:

* :meth:`Registry.stop_namespace` raises :class:`RegistryTimeoutError` after
  it removed the names and told the actors to stop (some did not stop in
  time), and :class:`InvalidKeyError` after it removed the names and told
  their actors to stop when removing the group memberships then raised (its
  message says what was done);
* a write raising :class:`RegistryUnavailableError` may or may not have been
  applied (its answer was lost).

Messages quote user values through :func:`safe_repr` and name their types
through :func:`type_name` (a metaclass may make ``__name__`` raise), so
building an error never raises.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any

import pykka

from pykka_registry._types import ActorRefLike

__all__ = [
    "MIN_SECRET_BYTES",
    "ActorNotAliveError",
    "AlreadyRegisteredError",
    "ChildRetired",
    "DuplicateServiceError",
    "GroupsNotSupportedError",
    "InvalidActorRefError",
    "InvalidBatchItemError",
    "InvalidKeyError",
    "InvalidMetadataError",
    "InvalidSecretError",
    "InvalidStrategyError",
    "InvalidTimeoutError",
    "NotHeldHereError",
    "NotRegisteredError",
    "RegistryError",
    "RegistryTimeoutError",
    "RegistryUnavailableError",
    "RemoteActorError",
    "RemoteTimeoutError",
    "RestartIntensityExceeded",
    "SupervisorError",
    "UnknownBackendError",
    "UnsignedMessagesWarning",
]


_type_name = type.__dict__["__name__"].__get__


def type_name(value: Any) -> str:
    """``type(value).__name__`` for a message, without running user code: a
    metaclass may make ``__name__`` a property that raises (``SystemExit``
    too), which in a server thread would reach Pykka; the class's own
    C-level name is read instead."""
    try:
        name = _type_name(type(value))
    except BaseException:  # not reachable for a real class; never let it out
        return "object"
    return name if type(name) is str else "object"


def safe_repr(value: Any, limit: int = 200) -> str:
    """``repr(value)`` for an error message: never raises (a hostile
    ``__repr__``, one returning a ``str`` subclass with hostile methods, a
    5,000-digit int, a self-referencing container), and at most ``limit``
    characters of a plain ``str``."""
    try:
        text = repr(value)
    except BaseException:  # user code must not replace our error
        text = f"<{type_name(value)} object (repr failed)>"
    if not isinstance(text, str):
        text = f"<{type_name(value)} object>"
    elif type(text) is not str:
        # A __repr__ may return a str subclass whose __len__, __getitem__ or
        # __format__ raise: work on a plain copy (str.__str__ runs no user code).
        text = str.__str__(text)
    return text if len(text) <= limit else text[: limit - 3] + "..."


class RegistryError(Exception):
    """Base class of every error the registry raises on purpose."""


class AlreadyRegisteredError(RegistryError):
    """The name is held by another live actor.

    ``existing`` is the holder's reference: a :class:`pykka.ActorRef`, or a
    remote reference when the holder lives in another process.
    """

    def __init__(self, namespace: Hashable, service: Hashable,
                 existing: ActorRefLike) -> None:
        super().__init__(
            f"{safe_repr(service)} in namespace {safe_repr(namespace)} is already registered "
            f"to {safe_repr(existing)}"
        )
        self.namespace = namespace
        self.service = service
        self.existing = existing

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.namespace, self.service, self.existing))


class NotRegisteredError(RegistryError, LookupError):
    """No live actor holds the name."""

    def __init__(self, namespace: Hashable, service: Hashable, detail: str = "") -> None:
        message = (f"no live actor is registered as {safe_repr(service)} in namespace "
                   f"{safe_repr(namespace)}")
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
            f"{safe_repr(service)} appears more than once in one batch for namespace "
            f"{safe_repr(namespace)}; "
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


class InvalidTimeoutError(RegistryError, ValueError):
    """A timeout is not a number of seconds the registry can wait (NaN,
    negative, not a number). Infinite and huge ones are clamped, not refused."""


class RegistryTimeoutError(RegistryError, TimeoutError):
    """A wait (such as :meth:`Registry.await_name`) ran out of time."""


class UnknownBackendError(RegistryError, ValueError):
    """A backend given by name (``Registry.start(backend="...")``) is not known,
    or its entry point cannot be loaded. The message lists the known names."""


class GroupsNotSupportedError(RegistryError, NotImplementedError):
    """The registry's backend keeps no groups (it declares
    ``supports_groups = False``): ``join``, ``members`` and the other group
    calls are refused with this, and nothing changes."""


class InvalidStrategyError(RegistryError, ValueError):
    """``group_via`` was given a strategy it does not know (the message
    lists the known ones), or a ``key`` that the strategy does not take."""


# -- supervision ---------------------------------------------------------------------


class SupervisorError(RegistryError):
    """A supervisor could not do what was asked (unknown child id, a child
    that failed to start...)."""


class RestartIntensityExceeded(SupervisorError):
    """A supervisor saw more restarts than its intensity allows and gave up."""


class ChildRetired(RegistryError):
    """Raised by a child's ``start`` function to say the child is finished for
    good (a registry that was stopped, say): the supervisor deletes the child
    from its tree instead of counting a failed restart.

    A signal from a ``start`` function to its supervisor, never raised to a
    caller of the supervisor (``start_child`` and ``restart_child`` of a
    child that retires raise :class:`SupervisorError`)."""


# -- messages between processes (the Redis backend) -------------------------------


class RemoteTimeoutError(RegistryTimeoutError, pykka.Timeout):
    """A remote ``ask`` got no answer by its deadline. The message may or may
    not have been handled. Also a :class:`pykka.Timeout` and a ``TimeoutError``."""


class RemoteActorError(RegistryError):
    """Stands for an exception raised by a remote actor that could not be
    pickled back; its message is the original's ``repr``."""


#: The shortest secret accepted, in bytes (a ``str`` counts in UTF-8): an
#: HMAC key much shorter than its 32-byte output is guessable.
MIN_SECRET_BYTES = 16


class InvalidSecretError(RegistryError, ValueError):
    """A ``secret`` that is not ``str``/``bytes``, or shorter than
    :data:`MIN_SECRET_BYTES` bytes (an empty secret included). Raised when the
    registry starts; nothing is started. Also a ``ValueError``."""


class InvalidRedisUrlError(RegistryError, ValueError):
    """The redis backend was started without a ``url`` in ``backend_opts``
    (there is no default: a library never talks to a server its user did not
    name), or with one that is not a ``redis://``, ``rediss://`` or
    ``unix://`` URL. Raised when the registry starts; nothing is started.
    Also a ``ValueError``."""


class NotHeldHereError(NotRegisteredError):
    """``update_metadata`` of a name that an actor of another process holds.

    Metadata updates are fenced by the writer's own claim: only the process
    whose actor holds a name may change its metadata (so a process that lost a
    name while it was paused cannot overwrite the new holder's metadata).
    A :class:`NotRegisteredError` (``LookupError``) for callers that catch that."""

    def __init__(self, namespace: Hashable, service: Hashable, node: str = "") -> None:
        RegistryError.__init__(
            self, f"{safe_repr(service)} in namespace {safe_repr(namespace)} is held by an "
            f"actor of node {node!r} (another process): only that process may update its "
            "metadata")
        self.namespace = namespace
        self.service = service
        self.node = node

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.namespace, self.service, self.node))


class UnsignedMessagesWarning(UserWarning):
    """Issued once per process location when a RedisBackend starts without a
    secret: remote messages are then neither signed nor verified. A warning,
    not an error: the registry works, unsigned."""
